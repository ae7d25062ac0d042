// docs/protocol.md §Reports (errors) and §Commands (409), docs/agent-api.md "Errors":
// what the agent does when the server refuses a request it cannot simply retry. A
// real agent talks to the real local server through a proxy (test/support/proxy.ts)
// that answers in the server's place for a while:
// - a report batch refused with a 4xx that is neither 401 nor 422 (a protocol
//   mismatch an upgrade would fix) is logged "SERVER REJECTED", kept, retried every
//   30 s and delivered once the server takes it;
// - a pull answered 409 (its `after` beyond the server's head) is logged, retried
//   with back-off with the same `after` (lastSeq is never lowered), and the agent
//   recovers.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@libsql/client";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { startProxy, type Exchange, type Proxy } from "../support/proxy.ts";
import { TestServer, waitFor, type Proc } from "../support/local-server.ts";

const server = new TestServer();
const NAME = "refused";
let proxy: Proxy;
let home: string;
let agent: Proc;

beforeAll(async () => {
  await server.start();
  proxy = await startProxy(server.port);
  home = await server.registerAgent(NAME, proxy.base);
  agent = server.startAgent(NAME, home);
  await server.waitAgentOnline(NAME);
});
afterAll(async () => {
  await agent?.stop();
  await proxy?.close();
  await server.stop();
});

const agentLog = () => readFileSync(agent.logFile, "utf8");
const isReportPost = (x: Exchange) => x.method === "POST" && x.url === "/agent/v1/reports";
const isPull = (x: Exchange) => x.method === "GET" && x.url.startsWith("/agent/v1/commands?");
const afterOf = (x: Exchange) => Number(new URLSearchParams(x.url.split("?")[1]).get("after"));

async function deployOne(command: string): Promise<{ dep: string; stepId: string }> {
  const r = await server.api("POST", "/api/v1/deployments", { agents: [NAME], steps: [{ name: "one", type: "shell", command }] });
  expect(r.status, r.text).toBe(201);
  return { dep: r.json.id, stepId: (await server.api("GET", `/api/v1/deployments/${r.json.id}`)).json.steps[0].id };
}

async function outboxIds(): Promise<string[]> {
  const db = createClient({ url: pathToFileURL(join(home, "journal.db")).href });
  try {
    return (await db.execute("SELECT id FROM outbox")).rows.map((r) => String(r.id));
  } finally {
    db.close();
  }
}

describe("server refusals", () => {
  it("§Reports: a batch refused with 400 is logged SERVER REJECTED, kept in the outbox, retried every 30 s, and delivered once the server takes it", async () => {
    proxy.intercept = (x) => (isReportPost(x) ? { answer: { status: 400, body: { error: "unsupported report format (test proxy)" } } } : undefined);
    const from = proxy.exchanges.length;
    const { dep, stepId } = await deployOne("echo refused-then-delivered");
    const refused = await waitFor(async () => proxy.exchanges.slice(from).find((x) => isReportPost(x) && x.status === 400), 30_000, "a report batch refused");
    proxy.intercept = null; // the server takes the next attempt
    await waitFor(async () => agentLog().includes("SERVER REJECTED"), 10_000, "the refusal in the agent's log");
    expect(agentLog()).toMatch(
      new RegExp(`ERROR SERVER REJECTED \\d report\\(s\\) ${stepId}:started.*; they stay in the outbox, retrying in 30 s: POST /agent/v1/reports: HTTP 400: unsupported report format \\(test proxy\\)`),
    );
    expect(await outboxIds()).toContain(`${stepId}:started`); // kept, not dropped

    const done = await server.waitDeployment(dep, 60_000);
    expect(done.steps[0]).toMatchObject({ status: "succeeded", exitCode: 0 });
    expect((await server.api("GET", `/api/v1/deployments/${dep}/steps/${stepId}/log`)).text).toBe("refused-then-delivered\n");
    // The next attempt came 30 s after the refusal, not sooner (no back-off race), and went through.
    const posts = proxy.exchanges.slice(from).filter(isReportPost);
    const next = posts[posts.indexOf(refused) + 1];
    expect(next.status).toBe(200);
    expect(next.at - refused.endedAt!).toBeGreaterThanOrEqual(29_500);
    expect(JSON.parse(next.body.toString()).reports.map((r: { id: string }) => r.id)).toContain(`${stepId}:started`);
    await waitFor(async () => (await outboxIds()).length === 0, 10_000, "the outbox to empty");
  });

  it("§Commands: a pull answered 409 (after beyond the server's head) is logged and retried with back-off, lastSeq kept; the agent recovers", async () => {
    let answered: Exchange | null = null;
    proxy.intercept = (x) => {
      if (answered !== null || !isPull(x)) return undefined;
      answered = x;
      return { answer: { status: 409, body: { error: `after ${afterOf(x)} is beyond the head 0 (test proxy)`, head: 0 } } };
    };
    const from = proxy.exchanges.length;
    const { dep } = await deployOne("echo after-the-409");
    const done = await server.waitDeployment(dep, 60_000);
    expect(done.steps[0]).toMatchObject({ status: "succeeded", exitCode: 0 });
    expect(answered).not.toBeNull();
    const refused = answered! as Exchange;
    const lastSeq = afterOf(refused);
    expect(lastSeq).toBeGreaterThan(0); // the earlier test's command is in the journal
    const m = new RegExp(
      `ERROR pull after=${lastSeq} refused: the server's head is behind this journal; retrying in (\\d+) ms: GET /agent/v1/commands\\?after=${lastSeq}&wait=\\d+: HTTP 409: .*` +
        `\\(the server's command head 0 is behind this agent's lastSeq ${lastSeq}: .*lastSeq is kept; retrying\\)`,
    ).exec(agentLog());
    expect(m, "the 409 in the agent's log").not.toBeNull();
    // Retried after the back-off it logged, with the same `after`; never a lower one.
    const pulls = proxy.exchanges.slice(from).filter(isPull);
    const retry = pulls[pulls.indexOf(refused) + 1];
    expect(afterOf(retry)).toBe(lastSeq);
    expect(retry.at - refused.endedAt!).toBeGreaterThanOrEqual(Number(m![1]) - 50);
    expect(Math.min(...pulls.map(afterOf))).toBe(lastSeq);
  });
});
