// The delivery contract as the agent keeps it, against the real local server:
// a worker killed mid-step re-attaches (and the step's timeout still counts from
// its start); a step that finishes while the server is
// down reaches it afterwards; a step whose fate is unknowable is reported
// interrupted (or re-run when declared retry "safe"); logs stream while a step
// runs and arrive whole in chunks.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TestServer, waitFor, type Proc } from "../support/local-server.ts";
import { readPid, isRunning as alive } from "../support/pids.ts";

const server = new TestServer();
let home: string;
let agent: Proc;
const NAME = "recovery-agent";

beforeAll(async () => {
  await server.start();
  home = await server.registerAgent(NAME);
  agent = server.startAgent(NAME, home);
  await server.waitAgentOnline(NAME);
});

afterAll(async () => {
  await agent?.stop();
  await server.stop();
});

const marker = (name: string) => join(server.work, `${name}-${Math.random().toString(36).slice(2)}`);

async function deploy(steps: object[]): Promise<string> {
  const r = await server.api("POST", "/api/v1/deployments", { agents: [NAME], steps });
  expect(r.status, r.text).toBe(201);
  return r.json.id;
}

async function waitStepRunning(depId: string, index = 0): Promise<string> {
  return waitFor(async () => {
    const r = await server.api("GET", `/api/v1/deployments/${depId}`);
    const s = r.json?.steps?.[index];
    return s?.status === "running" ? (s.id as string) : null;
  }, 30_000, `step ${index} of ${depId} running`);
}

async function stepLog(depId: string, stepId: string): Promise<string> {
  return (await server.api("GET", `/api/v1/deployments/${depId}/steps/${stepId}/log`)).text;
}

describe("agent recovery", () => {
  it("§Steps outlive the worker: a worker killed mid-step is restarted, re-attaches to the step still running, watches it to its end, and the step runs once", async () => {
    const runs = marker("runs");
    const go = marker("go");
    const dep = await deploy([{ name: "long", type: "shell", command: `echo run >> ${runs}; echo before; while [ ! -e ${go} ]; do sleep 0.1; done; echo after` }]);
    const stepId = await waitStepRunning(dep);
    const stepPid = await waitFor(async () => readPid(join(home, "steps", stepId, "pid")), 10_000, "the step's pid file");
    const worker = readPid(join(home, "worker.pid"))!;
    const logFrom = readFileSync(agent.logFile, "utf8").length;
    process.kill(worker, "SIGKILL");
    // The step waits for the go-file, so it is still running when the new worker starts:
    // that worker must find its process and re-attach to it.
    await waitFor(async () => readFileSync(agent.logFile, "utf8").slice(logFrom).includes(`re-attached to step ${stepId}, pid ${stepPid}`), 30_000, "the new worker to re-attach");
    expect(readPid(join(home, "worker.pid"))).not.toBe(worker);
    expect(alive(stepPid)).toBe(true);
    expect(existsSync(join(home, "steps", stepId, "status"))).toBe(false);
    writeFileSync(go, ""); // only now may the step end: the re-attached worker must see it
    const done = await server.waitDeployment(dep, 60_000);
    expect(done.steps[0]).toMatchObject({ status: "succeeded", exitCode: 0 });
    expect(readFileSync(runs, "utf8")).toBe("run\n");
    expect(await stepLog(dep, stepId)).toBe("before\nafter\n");
    expect(readFileSync(agent.logFile, "utf8").slice(logFrom)).not.toContain(`step ${stepId} ended while no worker watched it`);
  });

  it("§Steps outlive the worker: a re-attached step's timeout counts from its original start, not from the worker's restart", async () => {
    const T = 16;
    const dep = await deploy([{ name: "slow", type: "shell", timeoutSeconds: T, command: "echo started; sleep 120" }]);
    const stepId = await waitStepRunning(dep);
    const startedAt = Date.parse((await server.api("GET", `/api/v1/deployments/${dep}`)).json.steps[0].startedAt);
    // Halfway through its time, the worker dies; the monitor starts a new one, which re-attaches.
    await waitFor(async () => Date.now() >= startedAt + (T * 1000) / 2, T * 1000, "half the step's timeout to pass");
    const logFrom = readFileSync(agent.logFile, "utf8").length;
    process.kill(readPid(join(home, "worker.pid"))!, "SIGKILL");
    await waitFor(async () => readFileSync(agent.logFile, "utf8").slice(logFrom).includes(`re-attached to step ${stepId}`), 30_000, "the new worker to re-attach");
    const done = await server.waitDeployment(dep, 60_000);
    expect(done.steps[0]).toMatchObject({ status: "failed", exitCode: null, reason: expect.stringMatching(/^timeout: still running after 16 s/) });
    // Killed about T after it started (SIGTERM ends it at once). Counting from the
    // restart instead would end it about T/2 later: the upper bound allows 4 s of slack.
    const ranMs = Date.parse(done.steps[0].finishedAt) - startedAt;
    expect(ranMs).toBeGreaterThanOrEqual(T * 1000 - 500);
    expect(ranMs).toBeLessThan(T * 1000 + 4_000);
  });

  it("§Logs: streams a running step's output and uploads large output whole, in chunks", async () => {
    const dep = await deploy([
      { name: "stream", type: "shell", command: "echo first; sleep 4; echo second" },
      { name: "big", type: "shell", command: "head -c 700000 /dev/zero | tr '\\0' 'x'; echo; echo end" },
    ]);
    const first = await waitStepRunning(dep, 0);
    await waitFor(async () => (await stepLog(dep, first)) === "first\n", 3_000, "output of the running step");
    const done = await server.waitDeployment(dep, 60_000);
    expect(done.status).toBe("succeeded");
    expect(await stepLog(dep, first)).toBe("first\nsecond\n");
    const big = await stepLog(dep, done.steps[1].id);
    expect(big.length).toBe(700_000 + 1 + 4);
    expect(big.endsWith("x\nend\n")).toBe(true);
  });

  it("§Logs: uploads a step's output past the previous release's 16 MiB cap whole (R2 storage, 1 GiB cap)", async () => {
    const dep = await deploy([{ name: "huge", type: "shell", command: "head -c 17000000 /dev/zero | tr '\\0' 'y'; echo end" }]);
    const done = await server.waitDeployment(dep, 90_000);
    expect(done.steps[0]).toMatchObject({ status: "succeeded", exitCode: 0, reason: null });
    // The log is read by range (docs/api.md): the size header says what the server holds.
    const url = `${server.base}/api/v1/deployments/${dep}/steps/${done.steps[0].id}/log`;
    const head = await fetch(`${url}?limit=4`, { headers: { authorization: `Bearer ${server.adminToken}` } });
    expect(head.headers.get("x-log-size")).toBe(String(17_000_004));
    expect(head.headers.get("x-log-complete")).toBe("true");
    expect(await head.text()).toBe("yyyy");
    const tail = await fetch(`${url}?offset=16999990`, { headers: { authorization: `Bearer ${server.adminToken}` } });
    expect(await tail.text()).toBe("yyyyyyyyyyend\n");
  });

  it("§Outages: a step that finishes while the server is down is reported once it is back", async () => {
    const dep = await deploy([{ name: "outage", type: "shell", command: "echo during; sleep 2; echo outage-done" }]);
    const stepId = await waitStepRunning(dep);
    await server.stop();
    const stepDir = join(home, "steps", stepId);
    await waitFor(async () => existsSync(join(stepDir, "status")), 20_000, "the step to end while the server is down");
    await server.start();
    const done = await server.waitDeployment(dep, 90_000);
    expect(done.steps[0]).toMatchObject({ status: "succeeded", exitCode: 0 });
    expect(await stepLog(dep, stepId)).toBe("during\noutage-done\n");
  });

  it("§Steps outlive the worker: a step whose process vanished with the agent is interrupted, the rest skipped; a safe one is re-run", async () => {
    const runs = marker("runs");
    const dep = await deploy([
      { name: "victim", type: "shell", command: `echo run >> ${runs}; sleep 30` },
      { name: "next", type: "shell", command: "echo never" },
    ]);
    const stepId = await waitStepRunning(dep);
    const safeRuns = marker("safe-runs");
    // the whole agent dies, then the step's process group (as a reboot would)
    await agent.stop("SIGKILL");
    const stepPid = readPid(join(home, "steps", stepId, "pid"))!;
    expect(alive(stepPid)).toBe(true);
    process.kill(-stepPid, "SIGKILL");
    await waitFor(async () => !alive(stepPid), 5_000, "step process gone");

    agent = server.startAgent(NAME, home);
    const done = await server.waitDeployment(dep, 60_000);
    expect(done.status).toBe("failed");
    expect(done.steps.map((s: { status: string }) => s.status)).toEqual(["interrupted", "skipped"]);
    expect(done.steps[0].reason).toMatch(/interrupted/);
    expect(readFileSync(runs, "utf8")).toBe("run\n"); // never re-run

    const dep2 = await deploy([{ name: "safe", type: "shell", retry: "safe", command: `echo run >> ${safeRuns}; n=$(wc -l < ${safeRuns}); [ "$n" -ge 2 ] || sleep 30` }]);
    const step2 = await waitStepRunning(dep2);
    await agent.stop("SIGKILL");
    const pid2 = readPid(join(home, "steps", step2, "pid"))!;
    process.kill(-pid2, "SIGKILL");
    await waitFor(async () => !alive(pid2), 5_000, "step process gone");
    agent = server.startAgent(NAME, home);
    const done2 = await server.waitDeployment(dep2, 60_000);
    expect(done2.steps[0]).toMatchObject({ status: "succeeded", exitCode: 0 });
    expect(readFileSync(safeRuns, "utf8")).toBe("run\nrun\n");
  });

  it("§Steps outlive the worker: a worker killed while killing a timed-out step leaves the timeout behind: the next one records it, never re-runs it", async () => {
    const runs = marker("runs");
    // On SIGTERM the step lingers 3 s before it exits: the worker is killed in that window.
    const dep = await deploy([{ name: "slow-to-die", type: "shell", retry: "safe", timeoutSeconds: 2, command: `echo run >> ${runs}; trap 'sleep 3; exit 1' TERM; sleep 60 & wait` }]);
    const stepId = await waitStepRunning(dep);
    const verdict = join(home, "steps", stepId, "timed-out");
    await waitFor(async () => existsSync(verdict), 15_000, "the timeout to be decided");
    const worker = readPid(join(home, "worker.pid"))!;
    process.kill(worker, "SIGKILL");
    const done = await server.waitDeployment(dep, 60_000);
    expect(done.status).toBe("failed");
    expect(done.steps[0]).toMatchObject({ status: "failed", exitCode: null });
    expect(done.steps[0].reason).toMatch(/^timeout: still running after 2 s/);
    expect(readFileSync(runs, "utf8")).toBe("run\n"); // not re-run, though retry: "safe"
  });

  it("§Steps outlive the worker: a step that ended while the whole agent was stopped is finished from its status file", async () => {
    const dep = await deploy([{ name: "detached", type: "shell", command: "sleep 1; echo survived; exit 4" }]);
    const stepId = await waitStepRunning(dep);
    await agent.stop(); // SIGTERM to monitor and worker: the detached step keeps running
    await waitFor(async () => existsSync(join(home, "steps", stepId, "status")), 10_000, "the step to end on its own");
    const endedBy = Date.now();
    await new Promise((r) => setTimeout(r, 2_000)); // the agent finds out later than the step ended
    const restartedAt = Date.now();
    agent = server.startAgent(NAME, home);
    const done = await server.waitDeployment(dep, 60_000);
    expect(done.steps[0]).toMatchObject({ status: "failed", exitCode: 4 });
    expect(await stepLog(dep, stepId)).toBe("survived\n");
    // Its report says when it ended (the status file's time), not when the agent noticed.
    expect(Date.parse(done.steps[0].finishedAt)).toBeLessThanOrEqual(endedBy + 500);
    expect(Date.parse(done.steps[0].finishedAt)).toBeLessThan(restartedAt);
  });
});
