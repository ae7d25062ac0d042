// docs/protocol.md §Logs, "Failure cases": a log upload resumes from the offset in
// the journal — after a cut connection (the request lost, or only its answer), and
// at the server's `length` after a 409 (the journal claimed more than the server
// holds). Output of several chunks (1 MiB and up, docs/protocol.md §Logs) goes through a proxy
// (test/support/proxy.ts) that records every chunk's offset and cuts the ones the
// test picks; in the end the server's copy equals output.log byte for byte.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@libsql/client";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { stepPaths } from "../../agent/steps/shell-step.ts";
import { startProxy, type Exchange, type Proxy } from "../support/proxy.ts";
import { TestServer, waitFor, type Proc } from "../support/local-server.ts";

const server = new TestServer();
let proxy: Proxy;
const agents: Proc[] = [];

beforeAll(async () => {
  await server.start();
  proxy = await startProxy(server.port);
});
afterAll(async () => {
  for (const a of agents) await a.stop();
  await proxy?.close();
  await server.stop();
});

const isLogPut = (stepId: string) => (x: Exchange) => x.method === "PUT" && x.url.startsWith(`/agent/v1/steps/${encodeURIComponent(stepId)}/log?`);
const offsetOf = (x: Exchange) => Number(new URLSearchParams(x.url.split("?")[1]).get("offset"));
const lengthOf = (x: Exchange) => (x.answer ? (JSON.parse(x.answer.toString()) as { length: number }).length : null);

// The whole log, read by ranges of up to 1 MiB (docs/api.md).
async function serverLog(dep: string, stepId: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const r = await fetch(`${server.base}/api/v1/deployments/${dep}/steps/${stepId}/log?offset=${offset}`, { headers: { authorization: `Bearer ${server.adminToken}` } });
    expect(r.status).toBe(200);
    const part = Buffer.from(await r.arrayBuffer());
    parts.push(part);
    offset += part.length;
    if (part.length === 0 || offset >= Number(r.headers.get("x-log-size"))) return Buffer.concat(parts);
  }
}

async function deployOne(name: string, command: string): Promise<{ dep: string; stepId: string }> {
  const r = await server.api("POST", "/api/v1/deployments", { agents: [name], steps: [{ name: "out", type: "shell", command }] });
  expect(r.status, r.text).toBe(201);
  return { dep: r.json.id, stepId: (await server.api("GET", `/api/v1/deployments/${r.json.id}`)).json.steps[0].id };
}

describe("§Logs: resuming an upload", () => {
  it("after a cut connection, resumes from the journal's offset: a lost answer and a lost request each cost a retry, no byte is lost or doubled", async () => {
    const name = "cut-upload";
    const home = await server.registerAgent(name, proxy.base);
    agents.push(server.startAgent(name, home));
    await server.waitAgentOnline(name);
    // 6,888,896 bytes of distinct lines: several chunks, and any misplaced byte shows.
    let seen = 0;
    proxy.intercept = (x) => {
      if (x.method !== "PUT" || !x.url.includes("/log?")) return undefined;
      seen++;
      if (seen === 2) return { cut: "answer" }; // the server stores the chunk; the agent never hears so
      if (seen === 3) return { cut: "request" }; // the retry is lost before the server sees it
      return undefined;
    };
    const { dep, stepId } = await deployOne(name, "seq 1 1000000");
    const done = await server.waitDeployment(dep, 60_000);
    proxy.intercept = null;
    expect(done.steps[0]).toMatchObject({ status: "succeeded", exitCode: 0 });
    const local = readFileSync(stepPaths(join(home, "steps"), stepId).log);
    expect(local.length).toBe(6_888_896);
    expect((await serverLog(dep, stepId)).equals(local)).toBe(true);

    // Each chunk starts where the agent last heard the server was (its journal's
    // offset): the chunk whose answer was lost is sent again from the same offset,
    // and so is the retry that was lost; the server, already holding the first,
    // answers the next one with a length past it.
    const puts = proxy.exchanges.filter(isLogPut(stepId));
    let heard = 0;
    for (const x of puts) {
      expect(offsetOf(x), `chunk ${puts.indexOf(x) + 1}`).toBe(heard);
      if (x.status === 200) heard = lengthOf(x)!;
    }
    expect(heard).toBe(local.length);
    expect(puts.slice(0, 4).map((x) => x.status)).toEqual([200, "cut", "cut", 200]);
    expect(lengthOf(puts[3])).toBeGreaterThanOrEqual(offsetOf(puts[1]) + puts[1].body.length);
    expect(puts.length).toBeGreaterThanOrEqual(5); // 6.9 MB in chunks that start at 1 MiB and halve after each failure
  });

  it("after a 409, resumes at the length the server holds", async () => {
    const name = "gap-upload";
    const home = await server.registerAgent(name, proxy.base);
    let agent = server.startAgent(name, home);
    agents.push(agent);
    await server.waitAgentOnline(name);
    const go = join(server.work, "go-gap");
    // 348,894 bytes, a pause, then the rest: 588,895 bytes in all.
    const { dep, stepId } = await deployOne(name, `seq 1 60000; while [ ! -e ${go} ]; do sleep 0.1; done; seq 60001 100000`);
    const first = 348_894;
    await waitFor(async () => (await serverLog(dep, stepId)).length === first, 30_000, "the first part on the server");

    // With the agent stopped (the step runs on), the step ends, and its journal is made
    // to claim more uploaded than the server holds — as after the server lost its tail.
    await agent.stop();
    writeFileSync(go, "");
    const paths = stepPaths(join(home, "steps"), stepId);
    await waitFor(async () => existsSync(paths.status), 10_000, "the step to end");
    const claimed = 400_000;
    const db = createClient({ url: pathToFileURL(join(home, "journal.db")).href });
    try {
      await db.execute({ sql: "UPDATE steps SET log_uploaded = ? WHERE step_id = ?", args: [claimed, stepId] });
    } finally {
      db.close();
    }
    const from = proxy.exchanges.length;
    agent = server.startAgent(name, home);
    agents.push(agent);
    const done = await server.waitDeployment(dep, 60_000);
    expect(done.steps[0]).toMatchObject({ status: "succeeded", exitCode: 0 });
    const local = readFileSync(paths.log);
    expect(local.length).toBe(588_895);
    expect((await serverLog(dep, stepId)).equals(local)).toBe(true);
    const chunks = proxy.exchanges.slice(from).filter(isLogPut(stepId)).map((x) => [offsetOf(x), x.status, lengthOf(x)]);
    expect(chunks).toEqual([
      [claimed, 409, first], // a gap: the server says where it is…
      [first, 200, 588_895], // …and the agent goes on from there
    ]);
    expect(readFileSync(agent.logFile, "utf8")).toContain(`log upload of step ${stepId} at offset ${claimed}: server holds ${first} bytes; resuming there`);
  });
});
