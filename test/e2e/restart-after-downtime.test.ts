// Found by using it (issue 6, item 11): `npm start`, a deployment with a long step,
// Ctrl-C (agent and server stop; the step runs on), `npm start` again much later. The
// deployment used to fail as agent-lost the moment the server came back, a second
// before the agent reconnected with its success. Server downtime must not count
// against the agent (docs/protocol.md §Agent lost, "Server downtime"). Real server,
// real agent, real step; the deadline is shortened to seconds so the downtime
// outlasts it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { sleep, TestServer, waitFor, type Proc } from "../support/local-server.ts";
import { readPid } from "../support/pids.ts";

const server = new TestServer();
const NAME = "downtime-agent";
let home: string;
let agent: Proc | undefined;

beforeAll(async () => {
  await server.start();
  home = await server.registerAgent(NAME);
  agent = server.startAgent(NAME, home);
  await server.waitAgentOnline(NAME);
});

afterAll(async () => {
  await agent?.stop();
  await server.stop();
  for (const d of existsSync(join(home ?? "/nonexistent", "steps")) ? readdirSync(join(home, "steps")) : []) {
    const pid = readPid(join(home, "steps", d, "pid"));
    if (pid) try { process.kill(-pid, "SIGKILL"); } catch { /* gone */ }
  }
});

describe("a server restarted after a downtime longer than agentLostAfterSeconds", () => {
  it("waits for the agent to come back instead of failing its steps as agent-lost", async () => {
    const created = await server.api("POST", "/api/v1/deployments", {
      agents: [NAME],
      steps: [{ name: "long", type: "shell", command: "sleep 4; echo done" }],
      agentLostAfterSeconds: 5,
    });
    expect(created.status, created.text).toBe(201);
    const id = created.json.id as string;
    await waitFor(async () => (await server.api("GET", `/api/v1/deployments/${id}`)).json?.steps?.[0]?.status === "running", 30_000, "the step running");

    // Ctrl-C: the agent stops first (its socket closes: the offline clock starts), then
    // the server. The step runs on and ends while both are down.
    await agent!.stop();
    await server.stop();
    const downSince = Date.now();
    await sleep(15_000); // three deadlines' worth of downtime
    await server.start();
    const serverBack = Date.now();
    // The agent comes back a little later, as after `npm start` (it registers nothing new).
    await sleep(3_000);
    agent = server.startAgent(NAME, home);

    const done = await server.waitDeployment(id, 60_000);
    expect(done.status).toBe("succeeded");
    expect(done.steps[0]).toMatchObject({ status: "succeeded", exitCode: 0, reason: null });
    // The step ended during the downtime, and says so; the server heard of it later.
    const finished = Date.parse(done.steps[0].finishedAt);
    expect(finished).toBeGreaterThanOrEqual(downSince - 2_000);
    expect(finished).toBeLessThan(serverBack);
    expect(Date.parse(done.steps[0].reportedAt)).toBeGreaterThanOrEqual(serverBack);
    const log = await server.api("GET", `/api/v1/deployments/${id}/steps/${done.steps[0].id}/log`);
    expect(log.text).toBe("done\n");
  });
});
