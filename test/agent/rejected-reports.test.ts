// docs/protocol.md §Reports: a report the server refuses (422: it names a step that
// is not this agent's) must not block the outbox. The agent posts the refused
// batch's reports one at a time, sets aside each one refused alone in the journal's
// rejected_reports (ERROR with the server's reason) and delivers the rest. The bad
// report is planted in a real agent's journal while it is stopped, ahead of a good one.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@libsql/client";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { TestServer, waitFor, type Proc } from "../support/local-server.ts";

const server = new TestServer();
const NAME = "rejecting";
let agent: Proc | undefined;

beforeAll(async () => {
  await server.start();
});
afterAll(async () => {
  await agent?.stop();
  await server.stop();
});

async function withJournal<T>(home: string, fn: (db: ReturnType<typeof createClient>) => Promise<T>): Promise<T> {
  const db = createClient({ url: pathToFileURL(join(home, "journal.db")).href });
  try {
    return await fn(db);
  } finally {
    db.close();
  }
}

describe("§Reports: a report the server refuses", () => {
  it("is set aside in rejected_reports with the server's reason; the reports queued with and after it are delivered", async () => {
    const home = await server.registerAgent(NAME);
    agent = server.startAgent(NAME, home);
    await server.waitAgentOnline(NAME);
    await agent.stop(); // the journal now exists

    // While the agent is stopped: a deployment for it, and two reports planted in its
    // outbox — one naming a step this agent never had, then a good one for the real step.
    const r = await server.api("POST", "/api/v1/deployments", { agents: [NAME], steps: [{ name: "after", type: "shell", command: "echo delivered" }] });
    expect(r.status, r.text).toBe(201);
    const dep = r.json.id as string;
    const stepId = (await server.api("GET", `/api/v1/deployments/${dep}`)).json.steps[0].id as string;
    const now = Date.now();
    const bogus = { type: "step-finished", id: "no-such-step:finished", deploymentId: "no-such-deployment", stepId: "no-such-step", status: "succeeded", exitCode: 0, reason: null, at: now };
    const good = { type: "step-started", id: `${stepId}:started`, deploymentId: dep, stepId, at: now };
    await withJournal(home, async (db) => {
      for (const rep of [bogus, good]) await db.execute({ sql: "INSERT INTO outbox (id, body, created_at) VALUES (?, ?, ?)", args: [rep.id, JSON.stringify(rep), now - 1_000] });
    });

    agent = server.startAgent(NAME, home);
    const done = await server.waitDeployment(dep, 60_000);
    expect(done.status).toBe("succeeded");
    expect(done.steps[0]).toMatchObject({ status: "succeeded", exitCode: 0 });
    const log = await waitFor(async () => {
      const text = readFileSync(agent!.logFile, "utf8");
      return text.includes("REPORT REJECTED") ? text : null;
    }, 10_000, "the rejection in the agent's log");
    expect(log).toMatch(/WARN the server refused 2 report\(s\) no-such-step:finished, .*:started together; posting them one at a time/);
    expect(log).toMatch(/ERROR REPORT REJECTED: the server refused report no-such-step:finished on its own \(HTTP 422: .*no-such-step.*\); it is moved out of the outbox into the journal's rejected_reports table/);
    expect(log).not.toMatch(/SERVER REJECTED/);
    await agent.stop();

    await withJournal(home, async (db) => {
      const rejected = (await db.execute("SELECT id, body, status, error FROM rejected_reports")).rows;
      expect(rejected).toHaveLength(1);
      expect(rejected[0]).toMatchObject({ id: "no-such-step:finished", body: JSON.stringify(bogus), status: 422 });
      expect(String(rejected[0].error)).toMatch(/not this agent's/);
      expect((await db.execute("SELECT id FROM outbox")).rows).toEqual([]);
    });
  });
});
