// docs/protocol.md §Resync, §Dispatch, §Presence: what the server answers on hello,
// how the DO dispatches on its own, the channel view the chaos suite reads.
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { AgentChannel } from "../../durable-objects/agent-channel.ts";
import { createDeployment as createRows } from "../../worker/deployments/create.ts";
import { createDeploymentBody } from "../../schema/api.ts";
import { d1 } from "../../d1/db.ts";
import worker from "../../worker/index.ts";
import {
  call, createDeployment, expectError, finishedReport, pull, postReports, registerAgent, startedReport, TestSocket, withClockAhead, type TestAgent,
} from "./helpers.ts";

const stub = (agent: TestAgent) => env.AGENT_CHANNEL.get(env.AGENT_CHANNEL.idFromName(agent.agentId));

async function agentView(agent: TestAgent) {
  const res = await call(`/api/v1/agents/${agent.agentId}`);
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as { id: string; name: string; status: string; channel: { connected: boolean; head: number; acked: number; openCommands: number; pendingProjections: number } };
}

describe("§Resync: welcome", () => {
  it("answers hello with head, acked, the already-applied reports and the expected results", async () => {
    const agent = await registerAgent("resync-1");
    await createDeployment([agent.name], [{ name: "a", command: "a" }, { name: "b", command: "b" }]);
    const [cmd] = (await pull(agent, 0)).commands;
    const done = finishedReport(cmd, 0, "succeeded", 0);
    expect((await postReports(agent, [startedReport(cmd, 0), done])).status).toBe(200);

    const socket = await TestSocket.open(agent);
    // The agent still holds `done` (its ack was lost) plus a report the server never saw.
    const unseen = startedReport(cmd, 1).id;
    socket.hello(1, [done.id, unseen]);
    expect(await socket.next("welcome")).toEqual({
      type: "welcome", agentId: agent.agentId, head: 1, acked: 1, applied: [done.id], expecting: [cmd.steps[1].stepId], heartbeatMs: 6667,
    });

    // Each reconnection says hello once. Only commands up to lastSeq are expected; a
    // journal at 0 is owed nothing.
    const again = await TestSocket.open(agent);
    again.hello(0, []);
    expect(await again.next("welcome")).toMatchObject({ head: 1, acked: 1, applied: [], expecting: [] });

    // Once the last final result is applied, nothing is expected and no command is open;
    // the settled command's ids still count as applied (answered from its steps' rows).
    expect((await postReports(agent, [finishedReport(cmd, 1, "failed", 2)])).status).toBe(200);
    const last = await TestSocket.open(agent);
    last.hello(1, [done.id, unseen]);
    expect(await last.next("welcome")).toMatchObject({ applied: [done.id, unseen], expecting: [] });
    expect((await agentView(agent)).channel).toEqual({ connected: true, head: 1, acked: 1, openCommands: 0, pendingProjections: 0, waitingPulls: 0, alarms: 0 });
    last.ws.close(1000, "bye");
  });

  it("acknowledges hello.lastSeq like a pull, never beyond head", async () => {
    const agent = await registerAgent("resync-2");
    await createDeployment([agent.name]);
    const socket = await TestSocket.open(agent);
    socket.hello(7);
    expect(await socket.next("welcome")).toMatchObject({ head: 1, acked: 1 });
    socket.ws.close(1000, "bye");
  });
});

describe("GET /api/v1/agents/:id (§Resync)", () => {
  it("shows the agent and its channel; 404 for an unknown id", async () => {
    const agent = await registerAgent("viewed");
    await createDeployment([agent.name]);
    const view = await agentView(agent);
    expect(view).toMatchObject({ id: agent.agentId, name: "viewed", status: "offline" });
    expect(view.channel).toEqual({ connected: false, head: 1, acked: 0, openCommands: 1, pendingProjections: 0, waitingPulls: 0, alarms: 0 });
    await expectError(await call("/api/v1/agents/nope"), 404, /not found/);
  });
});

describe("§Dispatch: the agent's DO picks up undispatched targets", () => {
  const body = (agent: string) => ({ agents: [agent], steps: [{ name: "x", type: "shell" as const, command: "true" }] });
  const dispatchedAt = (id: string) =>
    env.DB.prepare("SELECT dispatched_at AS at FROM deployment_targets WHERE deployment_id = ?").bind(id).first<{ at: number | null }>();

  it("on hello and on the presence alarm, for targets older than 5 s", async () => {
    const agent = await registerAgent("self-dispatch");
    // Rows written, dispatch never attempted (as if the request died right after the batch).
    const old = await createRows(d1(env), env.DB, createDeploymentBody.parse(body(agent.name)), Date.now() - 6000);
    const young = await createRows(d1(env), env.DB, createDeploymentBody.parse(body(agent.name)), Date.now());
    const socket = await TestSocket.open(agent);
    socket.hello();
    expect(await socket.next("commands")).toEqual({ type: "commands", head: 1 });
    expect((await dispatchedAt(old.id))?.at).not.toBeNull();
    expect((await dispatchedAt(young.id))?.at).toBeNull();
    const { commands } = await pull(agent, 0);
    expect(commands.map((c) => [c.deploymentId, c.agentLostAfterSeconds])).toEqual([[old.id, 900]]);

    // The periodic presence alarm (while connected) catches the younger one later.
    await withClockAhead(6000, async () => {
      socket.ws.send("ping");
      await socket.until(() => socket.raw.includes("pong"), "pong");
      expect(await runDurableObjectAlarm(stub(agent))).toBe(true);
    });
    expect((await dispatchedAt(young.id))?.at).not.toBeNull();
    expect((await pull(agent, 1)).commands.map((c) => c.deploymentId)).toEqual([young.id]);
    socket.ws.close(1000, "bye");
  });
});

describe("§Presence: OUTPOST_OFFLINE_AFTER_MS", () => {
  it("is honoured (20 s in this test configuration, 30 s by default)", async () => {
    const agent = await registerAgent("short-presence");
    const socket = await TestSocket.open(agent);
    socket.hello();
    await socket.next("welcome");
    await runInDurableObject(stub(agent), (_i: AgentChannel, state) => {
      for (const ws of state.getWebSockets()) ws.serializeAttachment({ ...(ws.deserializeAttachment() as object), seenAt: Date.now() });
    });
    await withClockAhead(25_000, async () => {
      expect(await runDurableObjectAlarm(stub(agent))).toBe(true);
    });
    await socket.until(() => socket.closed, "the sweep to close the socket");
    expect(socket.closed?.code).toBe(4000);
  });
});

describe("test hook: evict (chaos suite)", () => {
  it("drops sockets and memory, keeps storage; the alarm then marks the agent offline", async () => {
    const agent = await registerAgent("evictee");
    await createDeployment([agent.name]);
    const socket = await TestSocket.open(agent);
    socket.hello(0);
    await socket.next("welcome");
    const res = await call(`/api/v1/test-hooks/agents/${agent.agentId}/evict`, { method: "POST" });
    expect(res.status, await res.clone().text()).toBe(200);
    expect(await res.json()).toEqual({ evicted: true });
    await socket.until(() => socket.closed, "the socket to drop");
    const view = await agentView(agent);
    expect(view.channel).toMatchObject({ connected: false, head: 1, openCommands: 1 });
    expect(await runDurableObjectAlarm(stub(agent))).toBe(true);
    expect((await agentView(agent)).status).toBe("offline");
    await expectError(await call("/api/v1/test-hooks/agents/nope/evict", { method: "POST" }), 404, /not found/);
  });

  it("does not exist unless OUTPOST_TEST_HOOKS=1", async () => {
    const agent = await registerAgent("no-hooks");
    const request = new Request(`https://outpost.test/api/v1/test-hooks/agents/${agent.agentId}/evict`, {
      method: "POST", headers: { authorization: "Bearer test-admin" },
    });
    const res = await worker.fetch(request as Parameters<typeof worker.fetch>[0], { ...env, OUTPOST_TEST_HOOKS: undefined }, { waitUntil() {}, passThroughOnException() {}, props: {} } as unknown as ExecutionContext);
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: "not found" });
  });
});
