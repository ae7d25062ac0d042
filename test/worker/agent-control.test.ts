// docs/agent-lifecycle.md §Config and §Restart through the real Worker and channel:
// config changes and restarts are ledger commands; the agent tells what it applies.
import { describe, expect, it } from "vitest";
import type { Command } from "../../schema/agent-api.ts";
import { agentCall, call, eventually, expectError, registerAgent, TestSocket, type TestAgent } from "./helpers.ts";

const patch = (key: string, body: unknown) => call(`/api/v1/agents/${key}`, { method: "PATCH", body: JSON.stringify(body) });
const detail = async (key: string) => (await (await call(`/api/v1/agents/${key}`)).json()) as { config: { desired: unknown; applied: unknown } };
async function commands(agent: TestAgent): Promise<Command[]> {
  return ((await (await agentCall(agent, "/agent/v1/commands?after=0")).json()) as { commands: Command[] }).commands;
}

describe("agent config", () => {
  it("stores the desired config and hands the agent the whole of it as a command", async () => {
    const agent = await registerAgent("cfg-agent");
    const first = await patch(agent.name, { concurrency: 3 });
    expect(first.status, await first.clone().text()).toBe(200);
    expect(((await first.json()) as { config: unknown }).config).toEqual({ desired: { concurrency: 3 }, applied: {} });
    expect((await patch(agent.name, { logLevel: "debug", tags: ["x"] })).status).toBe(200);
    expect((await detail(agent.name)).config).toEqual({ desired: { concurrency: 3, logLevel: "debug" }, applied: {} });

    const cmds = await commands(agent);
    expect(cmds.map((c) => (c.type === "config" ? c.config : c.type))).toEqual([{ concurrency: 3 }, { concurrency: 3, logLevel: "debug" }]);
    // Settled once stored: nothing is awaited from them.
    const status = (await (await call(`/api/v1/agents/${agent.agentId}`)).json()) as { channel: { openCommands: number } };
    expect(status.channel.openCommands).toBe(0);
    // Tags alone send nothing.
    expect((await patch(agent.name, { tags: ["y"] })).status).toBe(200);
    expect(await commands(agent)).toHaveLength(2);
  });

  it("records what the agent says it applies: in its hello, and in a status message", async () => {
    const agent = await registerAgent("cfg-applied");
    const socket = await TestSocket.open(agent);
    socket.ws.send(JSON.stringify({ type: "hello", version: "1.2.3", lastSeq: 0, running: [], reports: [], pendingReports: 0, config: { concurrency: 1, logLevel: "info" } }));
    await socket.next("welcome");
    await eventually(async () => JSON.stringify((await detail(agent.name)).config.applied) === JSON.stringify({ concurrency: 1, logLevel: "info" }), "applied from the hello");
    socket.ws.send(JSON.stringify({ type: "status", config: { concurrency: 4, logLevel: "warn" } }));
    await eventually(async () => JSON.stringify((await detail(agent.name)).config.applied) === JSON.stringify({ concurrency: 4, logLevel: "warn" }), "applied from the status message");
    expect(socket.closed).toBeNull();
  });

  it("refuses a status message before the hello, and bad values", async () => {
    const agent = await registerAgent("cfg-bad");
    const socket = await TestSocket.open(agent);
    socket.ws.send(JSON.stringify({ type: "status", config: { concurrency: 2 } }));
    await socket.until(() => socket.closed, "the close");
    expect(socket.closed?.code).toBe(1008);
    await expectError(await patch(agent.name, { concurrency: 0 }), 400);
    await expectError(await patch(agent.name, { logLevel: "loud" }), 400);
    await expectError(await patch(agent.name, {}), 400, /at least one/);
    await expectError(await patch("nobody", { concurrency: 2 }), 404);
    expect(await commands(agent)).toEqual([]);
  });
});

describe("agent restart", () => {
  it("POST …/restart stores a restart command (by name or id); 404 for an unknown agent", async () => {
    const agent = await registerAgent("rst-agent");
    const res = await call(`/api/v1/agents/${agent.name}/restart`, { method: "POST" });
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ id: agent.agentId, name: agent.name, restart: "requested" });
    expect((await call(`/api/v1/agents/${agent.agentId}/restart`, { method: "POST" })).status).toBe(202);
    expect((await commands(agent)).map((c) => c.type)).toEqual(["restart", "restart"]);
    await expectError(await call(`/api/v1/agents/nobody/restart`, { method: "POST" }), 404);
    await expectError(await call(`/api/v1/agents/${agent.name}/restart`, { method: "POST" }, "viewer-or-bad-token"), 401);
  });
});
