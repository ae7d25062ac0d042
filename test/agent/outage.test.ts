// The acceptance scenario of the delivery contract (issue 3, "Done when"), with
// real processes: a step that finishes while the server is down and the agent's
// worker has been killed is recorded once, with its full output, after the
// server comes back; the next step then runs, once. Each step appends its
// OUTPOST_STEP_ID to a count file, so executions are counted, not inferred.
// Sections: docs/protocol.md §Steps outlive the worker, §Outages, §Resync.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { projectRoot, startProc, TestServer, waitFor, type Proc } from "../support/local-server.ts";
import { readPid } from "../support/pids.ts";

const server = new TestServer();
const NAME = "outage-agent";
let home: string;
let agent: Proc;

// OUTPOST_AGENT_DEBUG=1: the agent logs each report batch it posts, which shows the delivery order.
const startAgent = () =>
  startProc(process.execPath, [join(projectRoot, "agent/bin/outpost-agent.mjs"), "run", "--home", home], {
    env: { OUTPOST_AGENT_DEBUG: "1" },
    logFile: join(server.work, `agent-${NAME}.log`),
  });

beforeAll(async () => {
  await server.start();
  home = await server.registerAgent(NAME);
  agent = startAgent();
  await server.waitAgentOnline(NAME);
});

afterAll(async () => {
  await agent?.stop();
  await server.stop();
  // steps run in their own process groups: end any a failed test left behind
  for (const d of existsSync(join(home ?? "/nonexistent", "steps")) ? readdirSync(join(home, "steps")) : []) {
    const pid = readPid(join(home, "steps", d, "pid"));
    if (pid) try { process.kill(-pid, "SIGKILL"); } catch { /* gone */ }
  }
});

const lines = (file: string) => (existsSync(file) ? readFileSync(file, "utf8").split("\n").filter(Boolean) : []);
const file = (name: string) => join(server.work, `${name}-${Math.random().toString(36).slice(2)}`);

async function deploy(steps: object[]): Promise<string> {
  const r = await server.api("POST", "/api/v1/deployments", { agents: [NAME], steps });
  expect(r.status, r.text).toBe(201);
  return r.json.id;
}

async function stepIdsRunning(dep: string): Promise<string[]> {
  return waitFor(async () => {
    const r = await server.api("GET", `/api/v1/deployments/${dep}`);
    return r.json?.steps?.[0]?.status === "running" ? r.json.steps.map((s: { id: string }) => s.id) : null;
  }, 30_000, `first step of ${dep} running`);
}

const stepLog = async (dep: string, stepId: string) => (await server.api("GET", `/api/v1/deployments/${dep}/steps/${stepId}/log`)).text;

// Step 1 waits for the go-file, then counts itself and prints; step 2 counts itself and prints.
function twoSteps(go: string, count: string) {
  return [
    { name: "one", type: "shell", command: `echo one-begin; while [ ! -e ${go} ]; do sleep 0.1; done; echo "$OUTPOST_STEP_ID" >> ${count}; echo one-end` },
    { name: "two", type: "shell", command: `echo "$OUTPOST_STEP_ID" >> ${count}; echo two` },
  ];
}

async function expectRecordedOnce(dep: string, ids: string[], count: string) {
  const done = await server.waitDeployment(dep, 90_000);
  expect(done.status).toBe("succeeded");
  expect(done.steps.map((s: { status: string; exitCode: number }) => [s.status, s.exitCode])).toEqual([["succeeded", 0], ["succeeded", 0]]);
  expect(await stepLog(dep, ids[0])).toBe("one-begin\none-end\n");
  expect(await stepLog(dep, ids[1])).toBe("two\n");
  expect(lines(count)).toEqual(ids); // each step executed exactly once, in order
}

describe("delivery contract under outages", () => {
  it("§Steps outlive the worker + §Outages: step 1 finishes while the server and the worker are killed -9; it is recorded once with its full output, then step 2 runs once", async () => {
    const go = file("go");
    const count = file("count");
    const dep = await deploy(twoSteps(go, count));
    const ids = await stepIdsRunning(dep);
    const monitor = agent.pid;
    await server.stop("SIGKILL");
    // Hold the monitor still so that the step provably ends while no worker exists
    // (it would restart the worker within 0.5 s); resumed below, it restarts it.
    process.kill(monitor, "SIGSTOP");
    const worker = readPid(join(home, "worker.pid"))!;
    process.kill(worker, "SIGKILL");
    writeFileSync(go, "");
    await waitFor(async () => existsSync(join(home, "steps", ids[0], "status")), 10_000, "step 1 to end while the worker is dead");
    process.kill(monitor, "SIGCONT");
    // the new worker collects step 1's status, and runs step 2 though the server is still down
    await waitFor(async () => lines(count).length === 2, 30_000, "step 2 to run during the outage");
    expect(readFileSync(agent.logFile, "utf8")).toContain(`step ${ids[0]} ended while no worker watched it (exit 0)`);
    expect(readPid(join(home, "worker.pid"))).not.toBe(worker);
    await server.start(server.port);
    await expectRecordedOnce(dep, ids, count);
  });

  it("§Steps outlive the worker + §Outages: the same with the monitor killed -9 too and `outpost-agent run` started again", async () => {
    const go = file("go");
    const count = file("count");
    const dep = await deploy(twoSteps(go, count));
    const ids = await stepIdsRunning(dep);
    await server.stop("SIGKILL");
    const worker = readPid(join(home, "worker.pid"))!;
    await agent.stop("SIGKILL"); // monitor and worker (its process group); steps have their own groups
    await waitFor(async () => { try { process.kill(worker, 0); return false; } catch { return true; } }, 10_000, "the worker to be gone");
    writeFileSync(go, "");
    await waitFor(async () => existsSync(join(home, "steps", ids[0], "status")), 10_000, "step 1 to end while no agent runs");
    agent = startAgent();
    await waitFor(async () => lines(count).length === 2, 30_000, "step 2 to run during the outage");
    await server.start(server.port);
    await expectRecordedOnce(dep, ids, count);
  });

  it("§Outages: queued steps keep running while the server is unreachable; results and output arrive in order, each once", async () => {
    const go = file("go");
    const count = file("count");
    const N = 5;
    const steps = Array.from({ length: N }, (_, i) => ({
      name: `s${i}`,
      type: "shell",
      command: (i === 0 ? `while [ ! -e ${go} ]; do sleep 0.1; done; ` : "") + `echo "$OUTPOST_STEP_ID" >> ${count}; echo out-${i}; echo err-${i} >&2`,
    }));
    const dep = await deploy(steps);
    const ids = await stepIdsRunning(dep);
    await server.stop("SIGKILL");
    const logBefore = readFileSync(agent.logFile, "utf8").length;
    writeFileSync(go, "");
    await waitFor(async () => lines(count).length === N, 30_000, "every step to run during the outage");
    for (let i = 0; i < N; i++) expect(readFileSync(join(home, "steps", ids[i], "output.log"), "utf8")).toBe(`out-${i}\nerr-${i}\n`);
    await server.start(server.port);
    const done = await server.waitDeployment(dep, 90_000);
    expect(done.status).toBe("succeeded");
    for (let i = 0; i < N; i++) {
      expect(done.steps[i]).toMatchObject({ status: "succeeded", exitCode: 0 });
      expect(await stepLog(dep, ids[i])).toBe(`out-${i}\nerr-${i}\n`);
    }
    expect(lines(count)).toEqual(ids);
    // in order: the first posting of each of this deployment's reports follows the steps' order
    const posted: string[] = [];
    for (const m of readFileSync(agent.logFile, "utf8").slice(logBefore).matchAll(/posting \d+ report\(s\): (.*)/g)) {
      for (const id of m[1].split(", ")) if (ids.some((s) => id.startsWith(s + ":")) && !posted.includes(id)) posted.push(id);
    }
    const expected = ids.flatMap((s, i) => (i === 0 ? [`${s}:finished`] : [`${s}:started`, `${s}:finished`]));
    expect(posted).toEqual(expected);
  });
});
