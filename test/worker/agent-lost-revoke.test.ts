// docs/protocol.md §Agent lost and §Revoke: the server ends an offline agent's work
// after the deployment's deadline (a late result is still recorded, the deployment is
// not revived), and a revoke ends all of an agent's work at once, with reasons.
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { AgentChannel } from "../../durable-objects/agent-channel.ts";
import {
  agentCall, call, createDeployment, deploymentView, eventually, expectError, finishedReport, postJson, pull, postReports, registerAgent, registrationToken,
  startedReport, TestSocket, tickAlarms, untilPullWaiting, withClockAhead, type TestAgent,
} from "./helpers.ts";

const stub = (agent: TestAgent) => env.AGENT_CHANNEL.get(env.AGENT_CHANNEL.idFromName(agent.agentId));
const dueWork = (agent: TestAgent) =>
  runInDurableObject(stub(agent), (_i: AgentChannel, state) =>
    state.storage.sql.exec<{ command_seq: number; due_at: number }>("SELECT command_seq, due_at FROM due_work ORDER BY command_seq").toArray(),
  );

describe("§Agent lost", () => {
  it("fails a never-connected agent's steps after the deadline, once; a late result is recorded without reviving the deployment", async () => {
    const agent = await registerAgent("lost-1");
    const t0 = Date.now();
    const id = await createDeployment([agent.name], [{ name: "a", command: "a" }, { name: "b", command: "b" }], { agentLostAfterSeconds: 60 });
    const row = await env.DB.prepare("SELECT agent_lost_after_seconds AS s FROM deployments WHERE id = ?").bind(id).first<{ s: number }>();
    expect(row?.s).toBe(60);
    const due = await dueWork(agent);
    expect(due).toHaveLength(1);
    expect(due[0].due_at).toBeGreaterThanOrEqual(t0 + 60_000);

    // Before the deadline nothing happens (the server is up: its alarm ticks on time).
    await tickAlarms(stub(agent), 0, 30_000);
    expect((await deploymentView(id)).status).toBe("queued");

    await tickAlarms(stub(agent), 30_000, 61_000);
    let view = await deploymentView(id);
    expect(view.status).toBe("failed");
    expect(view.steps.map((s) => [s.status, s.reason])).toEqual([["failed", "agent-lost"], ["failed", "agent-lost"]]);
    const finishedAt = view.finishedAt;
    expect(await dueWork(agent)).toEqual([]);
    // Not twice: a later alarm finds nothing to do.
    await withClockAhead(120_000, async () => void (await runDurableObjectAlarm(stub(agent))));
    await runInDurableObject(stub(agent), (_i: AgentChannel, state) => {
      expect(state.storage.sql.exec("SELECT count(*) AS n FROM projection_outbox").one().n).toBe(0);
      expect(state.storage.sql.exec("SELECT lost_at FROM commands").one().lost_at).not.toBeNull();
    });

    // The agent comes back: the server still expects both results.
    const [cmd] = (await pull(agent, 0)).commands;
    expect(cmd.agentLostAfterSeconds).toBe(60);
    const socket = await TestSocket.open(agent);
    socket.hello(1);
    expect((await socket.next("welcome")).expecting).toEqual(cmd.steps.map((s) => s.stepId));
    const res = await postReports(agent, [startedReport(cmd, 0), finishedReport(cmd, 0, "succeeded", 0), finishedReport(cmd, 1, "failed", 3, "boom")]);
    expect(res.status).toBe(200);
    view = await deploymentView(id);
    expect(view.status).toBe("failed");
    expect(view.finishedAt).toBe(finishedAt);
    expect(view.steps.map((s) => [s.status, s.exitCode, s.reason])).toEqual([
      ["succeeded", 0, "agent-lost; result arrived later"],
      ["failed", 3, "agent-lost; result arrived later: boom"],
    ]);
    // A re-sent late report is acknowledged, and changes nothing more.
    await postReports(agent, [{ ...finishedReport(cmd, 0, "failed", 1), id: `${cmd.steps[0].stepId}:finished` }]);
    expect((await deploymentView(id)).steps[0]).toMatchObject({ status: "succeeded", exitCode: 0 });
    socket.ws.close(1000, "bye");
  });

  it("counts from the moment the agent went offline, and a reconnect cancels the deadline", async () => {
    const agent = await registerAgent("lost-2");
    const socket = await TestSocket.open(agent);
    socket.hello();
    await socket.next("welcome");
    const id = await createDeployment([agent.name], undefined, { agentLostAfterSeconds: 60 });
    expect(await dueWork(agent)).toEqual([]); // online: no deadline
    socket.ws.close(1000, "network gone");
    const offlineAt = Date.now();
    const due = await (async () => {
      for (let i = 0; i < 100; i++) {
        const rows = await dueWork(agent);
        if (rows.length) return rows;
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error("no deadline after going offline");
    })();
    expect(due[0].due_at).toBeGreaterThanOrEqual(offlineAt - 1000 + 60_000);

    const again = await TestSocket.open(agent);
    again.hello(1);
    await again.next("welcome");
    expect(await dueWork(agent)).toEqual([]);
    await withClockAhead(120_000, async () => void (await runDurableObjectAlarm(stub(agent))));
    expect((await deploymentView(id)).steps[0].status).toBe("pending");
    again.ws.close(1000, "bye");
  });

  // Found by using it: `npm start`, a 30 s step, Ctrl-C, `npm start` 40 minutes later:
  // the deployment was failed as agent-lost a second before the agent reconnected.
  it("does not count server downtime: after a restart the agent gets its time to come back", async () => {
    const agent = await registerAgent("lost-downtime");
    const socket = await TestSocket.open(agent);
    socket.hello();
    await socket.next("welcome");
    const id = await createDeployment([agent.name], undefined, { agentLostAfterSeconds: 60 });
    socket.ws.close(1000, "agent stopped");
    const due = async () => (await dueWork(agent))[0]?.due_at;
    await eventually(async () => (await due()) !== undefined, "a deadline once offline");
    const deadline = (await due())!;

    // Two seconds of up time, then the server is down for 40 minutes: its next alarm
    // (a tick) fires only when it is back, 40 minutes late.
    await tickAlarms(stub(agent), 0, 2_000, 2_000);
    const back = 40 * 60_000;
    await withClockAhead(back, async () => void (await runDurableObjectAlarm(stub(agent))));
    expect((await deploymentView(id)).status).toBe("queued");
    const moved = (await due())!;
    expect(moved).toBeGreaterThan(deadline + back - 120_000); // the downtime, give or take a tick
    expect(moved).toBeGreaterThanOrEqual(Date.now() + back + 60_000 - 1_000); // at least the grace period from now

    // The server stays up; the agent does not return: lost once its up-time deadline passes.
    await tickAlarms(stub(agent), back, moved - Date.now() + 5_000);
    const view = await deploymentView(id);
    expect(view.status).toBe("failed");
    expect(view.steps[0].reason).toBe("agent-lost");
  });

  it("a short outage right at the deadline still leaves the agent a grace period", async () => {
    const agent = await registerAgent("lost-grace");
    const id = await createDeployment([agent.name], undefined, { agentLostAfterSeconds: 60 });
    const deadline = (await dueWork(agent))[0].due_at;
    const start = Date.now();
    // Up until 50 s (the alarm ticking every 5 s by then); down from 50 s to 70 s, past
    // the deadline at 60 s: the tick due at 55 s fires 15 s late.
    await tickAlarms(stub(agent), 0, 50_000, 5_000);
    await withClockAhead(70_000, async () => void (await runDurableObjectAlarm(stub(agent))));
    expect((await deploymentView(id)).status).toBe("queued");
    expect((await dueWork(agent))[0].due_at).toBeGreaterThanOrEqual(start + 70_000 + 60_000 - 1_000);
    expect(deadline).toBeLessThan(start + 61_000);
  });

  it("rejects an invalid agentLostAfterSeconds with 400", async () => {
    const agent = await registerAgent("lost-3");
    const body = (v: unknown) => ({ agents: [agent.name], steps: [{ name: "x", type: "shell", command: "c" }], agentLostAfterSeconds: v });
    await expectError(await postJson("/api/v1/deployments", body(0)), 400, /agentLostAfterSeconds/);
    await expectError(await postJson("/api/v1/deployments", body(1.5)), 400, /agentLostAfterSeconds/);
  });
});

describe("§Revoke: DELETE /api/v1/agents/:id", () => {
  it("closes the socket (4003), releases long-polls, cancels open steps, refuses the credential", async () => {
    const agent = await registerAgent("revokee");
    const socket = await TestSocket.open(agent);
    socket.hello();
    await socket.next("welcome");
    const id = await createDeployment([agent.name], [{ name: "a", command: "a" }, { name: "b", command: "b" }]);
    const [cmd] = (await pull(agent, 0)).commands;
    await postReports(agent, [startedReport(cmd, 0)]);
    const waiting = agentCall(agent, "/agent/v1/commands?after=1&wait=25");
    await untilPullWaiting(agent);

    const t0 = Date.now();
    const res = await call(`/api/v1/agents/${agent.agentId}`, { method: "DELETE" });
    expect(res.status, await res.clone().text()).toBe(200);
    const body = (await res.json()) as { id: string; name: string; revokedAt: string };
    expect(body).toEqual({ id: agent.agentId, name: "revokee", revokedAt: expect.any(String) });

    await socket.until(() => socket.closed, "the socket to close");
    expect(socket.closed).toEqual({ code: 4003, reason: "agent revoked" });
    await expectError(await waiting, 401, /revoked/);
    // Released by the revoke, not by its 25 s wait running out (a generous bound).
    expect(Date.now() - t0).toBeLessThan(20_000);
    await expectError(await agentCall(agent, "/agent/v1/commands?after=0"), 401, /revoked/);

    const view = await deploymentView(id);
    expect(view.status).toBe("failed");
    expect(view.steps.map((s) => [s.status, s.reason])).toEqual([["canceled", "agent revoked"], ["canceled", "agent revoked"]]);

    // Gone from the API, name not reusable, repeatable with the same answer.
    const { agents } = (await (await call("/api/v1/agents")).json()) as { agents: { id: string }[] };
    expect(agents.map((a) => a.id)).not.toContain(agent.agentId);
    await expectError(await call(`/api/v1/agents/${agent.agentId}`), 404);
    const repeat = await call(`/api/v1/agents/${agent.agentId}`, { method: "DELETE" });
    expect(repeat.status).toBe(200);
    expect(await repeat.json()).toEqual(body);
    const token = await registrationToken();
    await expectError(await postJson("/agent/v1/register", { token, name: "revokee", version: "1" }, null), 409);
    await runInDurableObject(stub(agent), (_i: AgentChannel, state) => {
      expect(state.storage.sql.exec("SELECT count(*) AS n FROM commands WHERE finished_at IS NULL").one().n).toBe(0);
    });
  });

  it("answers 404 for an unknown agent and 403 for a viewer", async () => {
    await expectError(await call("/api/v1/agents/nobody", { method: "DELETE" }), 404, /not found/);
    const now = Date.now();
    const { sha256Hex } = await import("../../worker/crypto.ts");
    await env.DB.prepare("INSERT INTO api_tokens (id, name, token_hash, role, created_at) VALUES ('v', 'v', ?, 'viewer', ?)").bind(await sha256Hex("viewer-x"), now).run();
    await expectError(await call("/api/v1/agents/nobody", { method: "DELETE" }, "viewer-x"), 403);
  });
});
