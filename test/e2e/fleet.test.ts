// The fleet benchmark's driver (bench/fleet/fleet.ts) at CI size: 20 simulated agents
// speaking the real agent protocol (docs/protocol.md) to a real local server. All
// come online; one deployment to all 20 has every step recorded once and succeeded;
// after the server is kill -9'd and restarted, every agent comes back by itself
// (§Reconnect) and nothing is run or applied again. Figures are not asserted against
// the goals (the machine is shared); correctness is.
import { describe, expect, it } from "vitest";
import { checkRuns, runFleet, type FleetResult } from "../../bench/fleet/fleet.ts";
import type { StepStatus } from "../../schema/steps.ts";

const N = 20;

// The run-count check the fleet test relies on, without a server: it must catch a step
// run twice, one never run, one run by the wrong agent, and a result not succeeded.
describe("the fleet driver's step accounting", () => {
  const step = (id: string, agent: string, status: StepStatus = "succeeded") => ({ id, agent, status });
  const fresh = (): Pick<FleetResult, "deploy" | "failures"> => ({
    deploy: { tagRefusal: null, deployments: [], firstPostMs: null, ms: null, lastAckMs: null, steps: 0, stepStatus: {}, ranTwice: [], neverRan: [], strayRuns: [] },
    failures: [],
  });
  const views = [{ steps: [step("s1", "a1"), step("s2", "a2")] }];

  it("passes when every step ran once on its own agent", () => {
    const r = fresh();
    checkRuns(r, views, [{ name: "a1", runs: new Map([["s1", 1]]) }, { name: "a2", runs: new Map([["s2", 1]]) }], 2);
    expect(r.failures).toEqual([]);
  });

  it("fails on a step run twice, never, elsewhere, or not succeeded", () => {
    const twice = fresh();
    checkRuns(twice, views, [{ name: "a1", runs: new Map([["s1", 2]]) }, { name: "a2", runs: new Map([["s2", 1]]) }], 2);
    expect(twice.deploy.ranTwice).toEqual(["s1 (a1: 2 times)"]);
    expect(twice.failures.join()).toMatch(/ran more than once/);

    const never = fresh();
    checkRuns(never, views, [{ name: "a1", runs: new Map([["s1", 1]]) }, { name: "a2", runs: new Map() }], 2);
    expect(never.failures.join()).toMatch(/never ran/);

    const stray = fresh();
    checkRuns(stray, views, [{ name: "a1", runs: new Map([["s1", 1], ["s2", 1]]) }, { name: "a2", runs: new Map([["s2", 1]]) }], 2);
    expect(stray.failures.join()).toMatch(/wrong agent/);

    const failed = fresh();
    checkRuns(failed, [{ steps: [step("s1", "a1"), step("s2", "a2", "failed")] }], [{ name: "a1", runs: new Map([["s1", 1]]) }, { name: "a2", runs: new Map([["s2", 1]]) }], 2);
    expect(failed.failures.join()).toMatch(/did not succeed/);

    const missing = fresh();
    checkRuns(missing, [{ steps: [step("s1", "a1")] }], [{ name: "a1", runs: new Map([["s1", 1]]) }], 2);
    expect(missing.failures.join()).toMatch(/1 steps recorded, 2 expected/);
  });
});

describe("a fleet of 20 simulated agents (§Commands, §Reports, §Resync, §Reconnect)", () => {
  let r: FleetResult;

  it("comes online, runs one deployment once everywhere, and comes back after a server kill -9", async () => {
    r = await runFleet({ agents: N });
    const protocol = r.problems.filter((p) => p.kind === "protocol").map((p) => `${p.agent}: ${p.what}`);
    expect(protocol, "protocol errors seen by the simulated agents").toEqual([]);
    expect(r.adminProblems, "unexpected management API answers").toEqual([]);

    // 1. all online: the API says so and every hello was answered.
    expect(r.online.ms, "time until all online").not.toBeNull();
    expect(r.online.apiOnline).toBe(N);
    expect(r.online.welcomed).toBe(N);

    // 2. one deployment to all 20 (under the per-deployment cap): every step recorded,
    // succeeded, and run exactly once, on its own agent.
    expect(r.deploy.tagRefusal).toBeNull();
    expect(r.deploy.deployments).toHaveLength(1);
    expect(r.deploy.deployments[0].status).toBe(201);
    expect(r.deploy.ms, "time until every step's result was recorded").not.toBeNull();
    expect(r.deploy.steps).toBe(N);
    expect(r.deploy.stepStatus).toEqual({ succeeded: N });
    expect(r.deploy.ranTwice).toEqual([]);
    expect(r.deploy.neverRan).toEqual([]);
    expect(r.deploy.strayRuns).toEqual([]);

    // 3. after kill -9 and a restart on the same state, all 20 back, results kept.
    expect(r.restart.killToBackMs, "the server answering again").not.toBeNull();
    expect(r.restart.ms, "time until all back online").not.toBeNull();
    expect(r.restart.reconnected).toBe(N);
    expect(r.restart.resultsKept).toBe(true);

    // The server's processes were found and measured.
    expect(r.memory.samples).toBeGreaterThan(0);
    expect(r.memory.peakWorkerdBytes).toBeGreaterThan(0);

    expect(r.failures).toEqual([]);
  }, 240_000);
});
