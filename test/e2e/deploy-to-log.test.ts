// The whole path as a user walks it: POST /api/v1/deployments → the agent's
// Durable Object → a real agent process → shell steps → reports and log upload →
// D1 → the deployment and its log read back through the API.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, readdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { TestServer, type Proc } from "../support/local-server.ts";

const server = new TestServer();
let agent: Proc;
let home: string;

beforeAll(async () => {
  await server.start();
  home = await server.registerAgent("e2e-agent");
  agent = server.startAgent("e2e-agent", home);
  await server.waitAgentOnline("e2e-agent");
});

afterAll(async () => {
  await agent?.stop();
  await server.stop();
});

describe("deployment to log", () => {
  it("runs shell steps in order with their ids in the environment and reads the output back", async () => {
    const created = await server.api("POST", "/api/v1/deployments", {
      name: "hello",
      agents: ["e2e-agent"],
      steps: [
        { name: "greet", type: "shell", command: "echo hello" },
        { name: "ids", type: "shell", command: 'echo "dep=$OUTPOST_DEPLOYMENT_ID step=$OUTPOST_STEP_ID"; echo to-stderr >&2' },
      ],
    });
    expect(created.status).toBe(201);
    const id = created.json.id as string;

    const done = await server.waitDeployment(id);
    expect(done.status).toBe("succeeded");
    expect(done.name).toBe("hello");
    expect(done.steps.map((s: any) => [s.name, s.agent, s.status, s.exitCode])).toEqual([
      ["greet", "e2e-agent", "succeeded", 0],
      ["ids", "e2e-agent", "succeeded", 0],
    ]);

    const greet = await server.api("GET", `/api/v1/deployments/${id}/steps/${done.steps[0].id}/log`);
    expect(greet.status).toBe(200);
    expect(greet.text).toBe("hello\n");
    const ids = await server.api("GET", `/api/v1/deployments/${id}/steps/${done.steps[1].id}/log`);
    expect(ids.text).toContain(`dep=${id} step=${done.steps[1].id}`);
    expect(ids.text).toContain("to-stderr");

    const list = await server.api("GET", "/api/v1/deployments");
    expect(list.json.deployments[0].id).toBe(id);
  });

  it("fails the deployment on a non-zero exit and skips the later steps", async () => {
    const created = await server.api("POST", "/api/v1/deployments", {
      agents: ["e2e-agent"],
      steps: [
        { name: "boom", type: "shell", command: "echo nope >&2; exit 7" },
        { name: "after", type: "shell", command: "echo never" },
      ],
    });
    const done = await server.waitDeployment(created.json.id);
    expect(done.status).toBe("failed");
    expect(done.steps.map((s: any) => [s.status, s.exitCode])).toEqual([["failed", 7], ["skipped", null]]);
    const log = await server.api("GET", `/api/v1/deployments/${created.json.id}/steps/${done.steps[0].id}/log`);
    expect(log.text).toBe("nope\n");
  });

  it("fails a step that outlives its timeout", async () => {
    const created = await server.api("POST", "/api/v1/deployments", {
      agents: ["e2e-agent"],
      steps: [{ name: "slow", type: "shell", command: "echo started; sleep 30", timeoutSeconds: 1 }],
    });
    const done = await server.waitDeployment(created.json.id);
    expect(done.status).toBe("failed");
    expect(done.steps[0].status).toBe("failed");
    expect(done.steps[0].reason).toMatch(/timeout/i);
  });

  it("runs one deployment's steps on every agent it lists", async () => {
    const home2 = await server.registerAgent("e2e-second");
    const second = server.startAgent("e2e-second", home2);
    try {
      await server.waitAgentOnline("e2e-second");
      const created = await server.api("POST", "/api/v1/deployments", {
        agents: ["e2e-agent", "e2e-second"],
        steps: [{ name: "where", type: "shell", command: "echo on-$OUTPOST_STEP_ID" }],
      });
      const done = await server.waitDeployment(created.json.id);
      expect(done.status).toBe("succeeded");
      expect(done.steps.map((s: any) => s.agent).sort()).toEqual(["e2e-agent", "e2e-second"]);
      for (const s of done.steps) {
        const log = await server.api("GET", `/api/v1/deployments/${created.json.id}/steps/${s.id}/log`);
        expect(log.text).toBe(`on-${s.id}\n`);
      }
    } finally {
      await second.stop();
    }
  });

  it("never listens on a port: no process of the agent's tree holds a listening socket", () => {
    const listening = new Set<string>();
    for (const f of ["/proc/net/tcp", "/proc/net/tcp6"]) {
      for (const line of readFileSync(f, "utf8").split("\n").slice(1)) {
        const c = line.trim().split(/\s+/);
        if (c[3] === "0A") listening.add(c[9]);
      }
    }
    const pids = [agent.pid, Number(readFileSync(join(home, "worker.pid"), "utf8"))];
    expect(pids[1]).toBeGreaterThan(0);
    for (const pid of pids) {
      const sockets = readdirSync(`/proc/${pid}/fd`).map((fd) => {
        try { return readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { return ""; } // fd closed meanwhile
      });
      const held = sockets.map((s) => /socket:\[(\d+)\]/.exec(s)?.[1]).filter((i): i is string => !!i);
      expect(held.length).toBeGreaterThan(0); // IPC and the WebSocket are sockets too: proves the check sees them
      expect(held.filter((i) => listening.has(i))).toEqual([]);
    }
  });
});

