// docs/agent-lifecycle.md §Config and §Restart with real processes: a config change
// reaches the running worker (and the server learns what it applies); a restart asked
// from the server hands over to a new worker while a step runs, and the step ends once
// with its whole output.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TestServer, waitFor, type Proc } from "../support/local-server.ts";
import { killGroups, readPid } from "../support/pids.ts";

const server = new TestServer();
const NAME = "controls-agent";
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

const applied = async () => JSON.stringify((await server.api("GET", `/api/v1/agents/${NAME}`)).json?.config?.applied);

describe("agent controls", () => {
  it("applies a config change while it runs and tells the server", async () => {
    await waitFor(async () => (await applied()) === JSON.stringify({ concurrency: 4, logLevel: "info" }), 20_000, "the defaults reported in the hello");
    const r = await server.api("PATCH", `/api/v1/agents/${NAME}`, { concurrency: 3, logLevel: "debug" });
    expect(r.status, r.text).toBe(200);
    expect(r.json.config.desired).toEqual({ concurrency: 3, logLevel: "debug" });
    await waitFor(async () => (await applied()) === JSON.stringify({ concurrency: 3, logLevel: "debug" }), 20_000, "the new config applied");
    const log = readFileSync(agent.logFile, "utf8");
    expect(log).toMatch(/config applied: up to 3 concurrent deployments, log level debug/);
    // Debug lines appear from then on (the channel's welcome is logged at debug).
    await server.api("PATCH", `/api/v1/agents/${NAME}`, { logLevel: "info" });
    await waitFor(async () => JSON.parse((await applied()) ?? "{}").logLevel === "info", 20_000, "back to info");
  });

  it("restarts the worker on request; a running step is re-attached and ends once with its whole output", async () => {
    const marker = join(server.work, "runs.txt");
    const created = await server.api("POST", "/api/v1/deployments", {
      agents: [NAME],
      steps: [{ name: "slow", type: "shell", command: `echo run >> '${marker}'; echo before; sleep 3; echo after` }],
    });
    expect(created.status, created.text).toBe(201);
    const step = await waitFor(async () => {
      const d = await server.api("GET", `/api/v1/deployments/${created.json.id}`);
      return d.json?.steps?.[0]?.status === "running" ? d.json.steps[0] : null;
    }, 20_000, "the step running");
    const stepPid = await waitFor(async () => readPid(join(home, "steps", step.id, "pid")), 10_000, "the step's pid");
    groups.push(stepPid);
    const before = readPid(join(home, "worker.pid"));
    expect(before).not.toBeNull();

    const r = await server.api("POST", `/api/v1/agents/${NAME}/restart`);
    expect(r.status, r.text).toBe(202);
    const after = await waitFor(async () => {
      const p = readPid(join(home, "worker.pid"));
      return p !== null && p !== before ? p : null;
    }, 20_000, "a new worker");
    expect(after).not.toBe(before);

    const done = await server.waitDeployment(created.json.id, 30_000);
    expect(done.status).toBe("succeeded");
    expect((await server.api("GET", `/api/v1/deployments/${done.id}/steps/${step.id}/log`)).text).toBe("before\nafter\n");
    expect(readFileSync(marker, "utf8")).toBe("run\n");
    const log = readFileSync(agent.logFile, "utf8");
    expect(log).toMatch(/the server asked for a restart/);
    expect(log).toMatch(/stopped for a restart the server asked for; starting a new one/);
    expect(log).toMatch(new RegExp(`re-attached to step ${step.id}`));
    // The new worker does not restart again for the same request.
    await new Promise((res) => setTimeout(res, 2000));
    expect(readPid(join(home, "worker.pid"))).toBe(after);
  });
});
