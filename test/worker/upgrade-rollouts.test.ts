// docs/agent-lifecycle.md §Upgrade and §Upgrading many agents through the real Worker and
// channels: upgrade commands in waves, the agents' reported states moving the rollout on
// or stopping it. Agents are played over the agent API and the WebSocket.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Command } from "../../schema/agent-api.ts";
import { agentCall, call, eventually, expectError, postJson, registerAgent, TestSocket, type TestAgent } from "./helpers.ts";

const SHA = "c".repeat(64);
async function version(v: string): Promise<void> {
  await env.DB.prepare("INSERT INTO agent_versions (version, sha256, platforms, size, uploaded_at) VALUES (?, ?, '[\"linux-x64-gnu\"]', 1, ?)").bind(v, SHA, Date.now()).run();
}
const upgradeCommands = async (a: TestAgent) =>
  ((await (await agentCall(a, "/agent/v1/commands?after=0")).json()) as { commands: Command[] }).commands.filter((c) => c.type === "upgrade");
const upgradeOf = async (a: TestAgent) => ((await (await call(`/api/v1/agents/${a.agentId}`)).json()) as { upgrade: { version: string; state: string } | null }).upgrade;

async function online(a: TestAgent): Promise<TestSocket> {
  const s = await TestSocket.open(a);
  s.hello();
  await s.next("welcome");
  return s;
}
const report = (s: TestSocket, v: string, state: string, reason: string | null = null) => s.ws.send(JSON.stringify({ type: "status", upgrade: { version: v, state, reason } }));

describe("upgrade one agent", () => {
  it("records pending, stores the command, takes the agent's states; 404 for an unknown version", async () => {
    await version("2.0.0");
    const a = await registerAgent("up-one");
    const res = await postJson(`/api/v1/agents/${a.name}/upgrade`, { version: "2.0.0" });
    expect(res.status, await res.clone().text()).toBe(202);
    expect((await upgradeCommands(a)).map((c) => c.type === "upgrade" && [c.version, c.sha256])).toEqual([["2.0.0", SHA]]);
    expect(await upgradeOf(a)).toMatchObject({ version: "2.0.0", state: "pending" });
    const s = await online(a);
    report(s, "2.0.0", "switching");
    await eventually(async () => (await upgradeOf(a))?.state === "switching", "switching recorded");
    await expectError(await postJson(`/api/v1/agents/${a.name}/upgrade`, { version: "9.9.9" }), 404, /no agent version 9\.9\.9/);
  });
});

describe("upgrade many agents in waves", () => {
  it("moves wave by wave as agents succeed, and stops at a rolled-back one", async () => {
    await version("3.0.0");
    const agents: TestAgent[] = [];
    for (let i = 0; i < 5; i++) {
      const a = await registerAgent(`up-wave-${i}`);
      await call(`/api/v1/agents/${a.agentId}`, { method: "PATCH", body: JSON.stringify({ tags: ["up-fleet"] }) });
      agents.push(a);
    }
    const sockets = await Promise.all(agents.map(online));
    const res = await postJson("/api/v1/agents/upgrade", { version: "3.0.0", tags: ["up-fleet"], batchSize: 2 });
    expect(res.status, await res.clone().text()).toBe(202);
    const body = (await res.json()) as { id: string; waves: string[][] };
    expect(body.waves).toEqual([["up-wave-0", "up-wave-1"], ["up-wave-2", "up-wave-3"], ["up-wave-4"]]);
    const waiting = async (i: number) => (await upgradeCommands(agents[i])).length;
    expect(await Promise.all([0, 1, 2, 3, 4].map(waiting))).toEqual([1, 1, 0, 0, 0]);

    report(sockets[0], "3.0.0", "succeeded");
    await eventually(async () => (await upgradeOf(agents[0]))?.state === "succeeded", "agent 0 succeeded");
    expect(await waiting(2)).toBe(0); // wave 2 waits for agent 1
    report(sockets[1], "3.0.0", "succeeded");
    await eventually(async () => (await waiting(2)) === 1 && (await waiting(3)) === 1, "wave 2 started");

    report(sockets[2], "3.0.0", "rolled-back", "the new worker exited (code 3) before it was healthy");
    report(sockets[3], "3.0.0", "succeeded");
    const listed = await eventually(async () => {
      const l = (await (await call("/api/v1/agents/upgrade")).json()) as { rollouts: { id: string; state: string; reason: string | null; currentWave: number }[] };
      const r = l.rollouts.find((x) => x.id === body.id);
      return r?.state === "stopped" ? r : null;
    }, "the rollout stopped");
    expect(listed).toMatchObject({ currentWave: 2, reason: expect.stringMatching(/wave 2 failed or rolled back/) });
    expect(await waiting(4)).toBe(0); // wave 3 never started
    expect(await upgradeOf(agents[4])).toBeNull();
  });

  it("refuses unknown agents, no matching tag, both agents and tags", async () => {
    await version("3.1.0");
    await expectError(await postJson("/api/v1/agents/upgrade", { version: "3.1.0", agents: ["nobody-here"] }), 422, /unknown agent/);
    await expectError(await postJson("/api/v1/agents/upgrade", { version: "3.1.0", tags: ["no-such-tag"] }), 422, /no agent carries/);
    await expectError(await postJson("/api/v1/agents/upgrade", { version: "3.1.0", agents: ["a"], tags: ["b"] }), 400, /not both/);
    await expectError(await postJson("/api/v1/agents/upgrade", { version: "0.0.0" }), 404);
  });
});
