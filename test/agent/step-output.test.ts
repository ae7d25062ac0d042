// docs/protocol.md §Logs, agent side, with real processes: a step's output on disk
// is capped like the server's copy (the cap lowered for the test through the
// test-only OUTPOST_AGENT_TEST_OUTPUT_CAP_BYTES), and an upload the server answers
// 410 (the step has ended there) stops, is logged as a WARN and counts as
// delivered, so the step's final report is not held.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@libsql/client";
import { appendFileSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { OUTPUT_CAP_TEST_ENV } from "../../agent/steps/output-cap.ts";
import { stepPaths } from "../../agent/steps/shell-step.ts";
import { projectRoot, startProc, TestServer, waitFor, type Proc } from "../support/local-server.ts";

const server = new TestServer();
const CAP = 65_536;
const procs: Proc[] = [];

beforeAll(async () => {
  await server.start();
});
afterAll(async () => {
  for (const p of procs) await p.stop();
  await server.stop();
});

const startAgent = (name: string, home: string, env: NodeJS.ProcessEnv = {}) => {
  const p = startProc(process.execPath, [join(projectRoot, "agent/bin/outpost-agent.mjs"), "run", "--home", home], { env, logFile: join(server.work, `agent-${name}.log`) });
  procs.push(p);
  return p;
};

async function deployOne(name: string, command: string): Promise<{ dep: string; stepId: string }> {
  const r = await server.api("POST", "/api/v1/deployments", { agents: [name], steps: [{ name: "out", type: "shell", command }] });
  expect(r.status, r.text).toBe(201);
  return { dep: r.json.id, stepId: (await server.api("GET", `/api/v1/deployments/${r.json.id}`)).json.steps[0].id };
}

const stepLog = async (dep: string, stepId: string) => (await server.api("GET", `/api/v1/deployments/${dep}/steps/${stepId}/log`)).text;

describe("§Logs: step output on the agent", () => {
  it("keeps output.log within the cap while the step runs (O_APPEND writes land at the cut), and says so in the step's reason", async () => {
    const name = "capped";
    const home = await server.registerAgent(name);
    const agent = startAgent(name, home, { [OUTPUT_CAP_TEST_ENV]: String(CAP) });
    await server.waitAgentOnline(name);
    // ~1 MB in 20 bursts, then a pause during which the file must already be cut back.
    const { dep, stepId } = await deployOne(name, "for i in $(seq 20); do head -c 50000 /dev/zero | tr '\\0' y; sleep 0.05; done; sleep 2; echo tail-end");
    const paths = stepPaths(join(home, "steps"), stepId);
    await waitFor(async () => readFileSync(agent.logFile, "utf8").includes(`step ${stepId} wrote more than ${CAP} bytes of output`), 20_000, "the cut while the step runs");
    await waitFor(async () => statSync(paths.log).size === CAP, 5_000, "output.log cut back to the cap during the pause");
    expect((await server.api("GET", `/api/v1/deployments/${dep}`)).json.steps[0].status).toBe("running");

    const done = await server.waitDeployment(dep, 60_000);
    expect(done.steps[0]).toMatchObject({ status: "succeeded", exitCode: 0 });
    const m = /output truncated: only the first 65536 bytes kept, (\d+) more discarded/.exec(done.steps[0].reason);
    expect(m, done.steps[0].reason).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(900_000);
    expect(statSync(paths.log).size).toBe(CAP);
    expect(await stepLog(dep, stepId)).toBe("y".repeat(CAP));
  });

  it("stops uploading a step's output when the server answers 410, counts it as delivered and sends the step's final report", async () => {
    const name = "ended-on-server";
    const home = await server.registerAgent(name);
    let agent = startAgent(name, home);
    await server.waitAgentOnline(name);
    const { dep, stepId } = await deployOne(name, "echo one");
    expect((await server.waitDeployment(dep)).status).toBe("succeeded");
    await waitFor(async () => (await stepLog(dep, stepId)) === "one\n", 10_000, "the output on the server");
    await agent.stop();

    // As if the agent had more output to upload, and its final report were not yet
    // acknowledged, for a step that has ended on the server.
    const paths = stepPaths(join(home, "steps"), stepId);
    appendFileSync(paths.log, "more\n");
    const finished = { type: "step-finished", id: `${stepId}:finished`, deploymentId: dep, stepId, status: "succeeded", exitCode: 0, reason: null, at: Date.now() };
    const db = createClient({ url: pathToFileURL(join(home, "journal.db")).href });
    try {
      await db.execute({ sql: "UPDATE steps SET log_size = log_size + 5 WHERE step_id = ?", args: [stepId] });
      await db.execute({ sql: "INSERT INTO outbox (id, body, created_at) VALUES (?, ?, ?)", args: [finished.id, JSON.stringify(finished), Date.now()] });
    } finally {
      db.close();
    }

    agent = startAgent(name, home);
    const log = await waitFor(async () => {
      const text = readFileSync(agent.logFile, "utf8");
      return text.includes("HTTP 410") ? text : null;
    }, 20_000, "the 410 in the agent's log");
    expect(log).toMatch(new RegExp(`WARN the server says step ${stepId} has ended \\(HTTP 410; it holds 4 bytes of its output\\): no more of its output is uploaded`));
    expect(log).not.toMatch(/log upload of step .* abandoned/);
    await waitFor(async () => {
      const c = createClient({ url: pathToFileURL(join(home, "journal.db")).href });
      try {
        const outbox = (await c.execute("SELECT id FROM outbox")).rows.length;
        const givenUp = (await c.execute({ sql: "SELECT log_given_up FROM steps WHERE step_id = ?", args: [stepId] })).rows[0]?.log_given_up;
        return outbox === 0 && typeof givenUp === "string" && givenUp.includes("410");
      } finally {
        c.close();
      }
    }, 20_000, "the final report delivered and the upload given up in the journal");
    expect(await stepLog(dep, stepId)).toBe("one\n");
  });
});
