// docs/api.md: bounded reads. The deployment list is paged by a cursor and carries step
// counts, never steps; a step log is read by byte range with its size and whether it is
// final, so a reader fetches only what is new.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { DeploymentSummary } from "../../schema/api.ts";
import { agentCall, call, createDeployment, expectError, finishedReport, pull, postReports, registerAgent, startedReport, type TestAgent } from "./helpers.ts";

type Page = { deployments: DeploymentSummary[]; next: string | null };

async function page(query: string): Promise<Page> {
  const res = await call(`/api/v1/deployments${query}`);
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as Page;
}

describe("GET /api/v1/deployments (paged)", () => {
  it("pages newest first by cursor, with step counts by status and no steps", async () => {
    const a = await registerAgent("pager-a");
    const b = await registerAgent("pager-b");
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await createDeployment([a.name, b.name], [{ name: "x", command: "x" }, { name: "y", command: "y" }]));
    // Two of them share a creation time: the cursor must still neither skip nor repeat.
    await env.DB.prepare("UPDATE deployments SET created_at = (SELECT created_at FROM deployments WHERE id = ?1) WHERE id = ?2").bind(ids[1], ids[2]).run();
    // Some progress on the newest, as an agent would report it.
    const [cmd] = (await pull(a, 0)).commands.filter((c) => c.deploymentId === ids[4]);
    expect((await postReports(a, [startedReport(cmd, 0), finishedReport(cmd, 0, "succeeded", 0), startedReport(cmd, 1)])).status).toBe(200);

    const seen: DeploymentSummary[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const p: Page = await page(`?limit=2${cursor ? `&before=${encodeURIComponent(cursor)}` : ""}`);
      expect(p.deployments.length).toBeLessThanOrEqual(2);
      seen.push(...p.deployments);
      cursor = p.next;
      pages++;
    } while (cursor !== null && pages < 10);
    const mine = seen.filter((d) => ids.includes(d.id));
    expect(mine.map((d) => d.id).sort()).toEqual([...ids].sort());
    expect(new Set(seen.map((d) => d.id)).size).toBe(seen.length);
    const created = seen.map((d) => d.createdAt);
    expect([...created].sort().reverse()).toEqual(created);

    const newest = mine.find((d) => d.id === ids[4])!;
    expect(newest).not.toHaveProperty("steps");
    expect(newest.agentCount).toBe(2);
    expect(newest.stepCounts).toEqual({ pending: 2, running: 1, succeeded: 1, failed: 0, interrupted: 0, skipped: 0, canceled: 0 });
    expect(newest.status).toBe("running");
    expect(mine.find((d) => d.id === ids[0])!.stepCounts.pending).toBe(4);
  });

  it("answers the last page with next: null, and refuses a bad limit or cursor with 400", async () => {
    const p = await page("?limit=100");
    expect(p.next).toBeNull();
    await expectError(await call("/api/v1/deployments?limit=101"), 400, /limit/);
    await expectError(await call("/api/v1/deployments?before=not-a-cursor"), 400, /before/);
    await expectError(await call("/api/v1/deployments?before="), 400, /before/);
    await expectError(await call("/api/v1/deployments?steps=1"), 400, /steps/);
  });
});

const enc = new TextEncoder();
const upload = (agent: TestAgent, stepId: string, offset: number, bytes: Uint8Array) =>
  agentCall(agent, `/agent/v1/steps/${stepId}/log?offset=${offset}`, { method: "PUT", body: bytes });

async function readRange(deploymentId: string, stepId: string, query: string) {
  const res = await call(`/api/v1/deployments/${deploymentId}/steps/${stepId}/log${query}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  return { status: res.status, bytes, size: res.headers.get("x-log-size"), complete: res.headers.get("x-log-complete"), type: res.headers.get("content-type") };
}

describe("GET …/steps/:stepId/log?offset&limit", () => {
  it("returns at most limit bytes from offset, with X-Log-Size and X-Log-Complete", async () => {
    const agent = await registerAgent("ranger");
    const id = await createDeployment([agent.name]);
    const [cmd] = (await pull(agent, 0)).commands;
    const stepId = cmd.steps[0].stepId;
    const text = "hello wörld\n"; // ö is two bytes: a range may cut it
    expect((await upload(agent, stepId, 0, enc.encode(text))).status).toBe(200);

    const whole = await readRange(id, stepId, "");
    expect(whole).toMatchObject({ status: 200, size: "13", complete: "false", type: "text/plain; charset=utf-8" });
    expect(new TextDecoder().decode(whole.bytes)).toBe(text);

    const middle = await readRange(id, stepId, "?offset=6&limit=3"); // "w", then half of "ö"
    expect([...middle.bytes]).toEqual([...enc.encode(text).slice(6, 9)]);
    // Reading on from where the last read ended yields the rest; a streaming decoder
    // puts the cut character back together.
    const rest = await readRange(id, stepId, "?offset=9");
    const decoder = new TextDecoder();
    expect(decoder.decode(middle.bytes, { stream: true }) + decoder.decode(rest.bytes)).toBe("wörld\n");

    const atEnd = await readRange(id, stepId, "?offset=13");
    expect(atEnd).toMatchObject({ status: 200, size: "13" });
    expect(atEnd.bytes.byteLength).toBe(0);
    expect((await readRange(id, stepId, "?offset=14")).status).toBe(416);
    await expectError(await call(`/api/v1/deployments/${id}/steps/${stepId}/log?limit=${1024 * 1024 + 1}`), 400, /limit/);
    await expectError(await call(`/api/v1/deployments/${id}/steps/${stepId}/log?offset=-1`), 400, /offset/);

    // The final result is in: the log is complete.
    expect((await postReports(agent, [startedReport(cmd, 0), finishedReport(cmd, 0, "succeeded", 0)])).status).toBe(200);
    expect((await readRange(id, stepId, "?offset=13")).complete).toBe("true");
  });

  it("reads across upload chunks and never more than 1 MiB at once", async () => {
    const agent = await registerAgent("big-log");
    const id = await createDeployment([agent.name]);
    const [cmd] = (await pull(agent, 0)).commands;
    const stepId = cmd.steps[0].stepId;
    const chunk = 256 * 1024;
    const total = 5 * chunk + 10;
    const all = new Uint8Array(total).map((_, i) => (i * 7) % 251);
    for (let at = 0; at < total; at += chunk) expect((await upload(agent, stepId, at, all.slice(at, at + chunk))).status).toBe(200);

    const first = await readRange(id, stepId, "");
    expect(first.size).toBe(String(total));
    expect(first.bytes.byteLength).toBe(1024 * 1024);
    expect(first.bytes).toEqual(all.slice(0, 1024 * 1024));
    const across = await readRange(id, stepId, `?offset=${chunk - 5}&limit=20`);
    expect(across.bytes).toEqual(all.slice(chunk - 5, chunk + 15));
    const tail = await readRange(id, stepId, `?offset=${1024 * 1024}`);
    expect(tail.bytes).toEqual(all.slice(1024 * 1024));
  });
});
