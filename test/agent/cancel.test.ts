// docs/protocol.md §Cancel with real processes: a cancel stops a running step's whole
// process group (SIGTERM, then SIGKILL after the grace period) within seconds, ends the
// pending steps `canceled` and the deployment `canceled` — also when the agent was
// offline at the time of the cancel and learns of it when it returns.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findStepProcesses } from "../../agent/steps/shell-step.ts";
import { TestServer, waitFor, type Proc } from "../support/local-server.ts";
import { killGroups } from "../support/pids.ts";

const server = new TestServer();
const NAME = "cancel-agent";
let home: string;
let agent: Proc;
const groups: number[] = [];

beforeAll(async () => {
  await server.start();
  home = await server.registerAgent(NAME);
  agent = server.startAgent(NAME, home);
  await server.waitAgentOnline(NAME);
});

afterAll(async () => {
  killGroups(groups);
  await agent?.stop();
  await server.stop();
});

async function deployRunning(command: string): Promise<{ id: string; stepId: string; pids: number[] }> {
  const r = await server.api("POST", "/api/v1/deployments", {
    agents: [NAME],
    steps: [
      { name: "long", type: "shell", command },
      { name: "after", type: "shell", command: "echo never" },
    ],
  });
  expect(r.status, r.text).toBe(201);
  const id = r.json.id as string;
  const stepId = await waitFor(async () => {
    const d = await server.api("GET", `/api/v1/deployments/${id}`);
    return d.json?.steps?.[0]?.status === "running" ? (d.json.steps[0].id as string) : null;
  }, 30_000, "step running");
  // The wrapper, the shell and both sleeps: all carry the step's id.
  const procs = await waitFor(async () => {
    const p = findStepProcesses(stepId);
    return p.length >= 3 ? p : null;
  }, 10_000, "step processes");
  groups.push(...new Set(procs.map((p) => p.pgid)));
  return { id, stepId, pids: procs.map((p) => p.pid) };
}

const cancel = (id: string) => server.api("POST", `/api/v1/deployments/${id}/cancel`);

describe("cancel", () => {
  it("stops a running sleep step's process group within seconds", async () => {
    const { id, stepId } = await deployRunning("sleep 300 & sleep 300; wait");
    const t0 = Date.now();
    expect((await cancel(id)).status).toBe(202);
    await waitFor(async () => findStepProcesses(stepId).length === 0, 10_000, "step processes gone");
    const stoppedMs = Date.now() - t0;
    const done = await server.waitDeployment(id, 20_000);
    expect(done.status).toBe("canceled");
    expect(done.steps.map((s: { status: string }) => s.status)).toEqual(["canceled", "canceled"]);
    expect(done.steps[0].reason).toMatch(/canceled/);
    expect(stoppedMs).toBeLessThan(10_000);
  });

  it("a step that ignores SIGTERM is killed after the grace period", async () => {
    const { id, stepId } = await deployRunning("trap '' TERM; sleep 300 & sleep 300; wait");
    expect((await cancel(id)).status).toBe(202);
    await waitFor(async () => findStepProcesses(stepId).length === 0, 15_000, "step processes gone after SIGKILL");
    expect((await server.waitDeployment(id, 20_000)).status).toBe("canceled");
  });

  it("an agent offline at the time of the cancel gets it when it returns", async () => {
    const { id, stepId } = await deployRunning("sleep 300 & sleep 300; wait");
    await agent.stop(); // the step's processes are detached: they keep running
    await waitFor(async () => (await server.api("GET", "/api/v1/agents")).json.agents.find((a: { name: string; status: string }) => a.name === NAME && a.status === "offline"), 60_000, "agent offline");
    expect(findStepProcesses(stepId).length).toBeGreaterThanOrEqual(3);

    expect((await cancel(id)).status).toBe(202);
    const waiting = await server.api("GET", `/api/v1/deployments/${id}`);
    expect(waiting.json.canceledAt).not.toBeNull();
    expect(waiting.json.status).toBe("running"); // the agent holds the step: it will say how it ended
    expect(findStepProcesses(stepId).length).toBeGreaterThanOrEqual(3);

    agent = server.startAgent(NAME, home);
    await waitFor(async () => findStepProcesses(stepId).length === 0, 30_000, "step processes gone after the agent returned");
    const done = await server.waitDeployment(id, 30_000);
    expect(done.status).toBe("canceled");
    expect(done.steps.map((s: { status: string }) => s.status)).toEqual(["canceled", "canceled"]);
  });
});
