// docs/protocol.md §Revoke: once an agent is revoked, nothing it sends changes any
// state, in any order of failures — including a revoke whose call to the agent's
// channel failed (simulated here by revoking in D1 alone), a report or log chunk in
// flight at the time, and a socket still open.
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { AgentChannel } from "../../durable-objects/agent-channel.ts";
import { AGENT_REVOKED } from "../../schema/agent-api.ts";
import { openLedger } from "../../durable-objects/ledger.ts";
import { tryAppendAt } from "../../d1/logs.ts";
import { appendLog } from "../../worker/routes/step-log-upload.ts";
import { HttpError } from "../../worker/http-errors.ts";
import {
  agentCall, call, createDeployment, deploymentView, eventually, expectError, finishedReport, pull, postReports, registerAgent, startedReport, TestSocket,
  withClockAhead, type TestAgent,
} from "./helpers.ts";

const stub = (agent: TestAgent) => env.AGENT_CHANNEL.get(env.AGENT_CHANNEL.idFromName(agent.agentId));
const enc = new TextEncoder();
const upload = (agent: TestAgent, stepId: string, offset: number, text: string) =>
  agentCall(agent, `/agent/v1/steps/${stepId}/log?offset=${offset}`, { method: "PUT", body: enc.encode(text) });
const logLength = async (stepId: string) =>
  (await env.DB.prepare("SELECT log_length AS n FROM deployment_steps WHERE id = ?").bind(stepId).first<{ n: number }>())?.n;
// What a DELETE whose call to the channel failed leaves behind: D1 says revoked, the DO does not know.
const revokeInD1Only = (agent: TestAgent) => env.DB.prepare("UPDATE agents SET revoked_at = ? WHERE id = ?").bind(Date.now(), agent.agentId).run();

describe("revocation gaps", () => {
  it("refuses every agent request after DELETE with 401 code agent-revoked, and changes nothing", async () => {
    const agent = await registerAgent("rev-all");
    const id = await createDeployment([agent.name]);
    const [cmd] = (await pull(agent, 0)).commands;
    const stepId = cmd.steps[0].stepId;
    expect((await call(`/api/v1/agents/${agent.agentId}`, { method: "DELETE" })).status).toBe(200);

    for (const res of [
      await postReports(agent, [startedReport(cmd, 0), finishedReport(cmd, 0, "succeeded", 0)]),
      await upload(agent, stepId, 0, "late output"),
      await agentCall(agent, "/agent/v1/commands?after=1"),
      await agentCall(agent, "/agent/v1/channel", { headers: { upgrade: "websocket" } }),
    ]) {
      const body = await expectError(res, 401, /revoked/);
      expect(body.code).toBe(AGENT_REVOKED);
    }
    const view = await deploymentView(id);
    expect(view.steps.map((s) => [s.status, s.reason])).toEqual([["canceled", "agent revoked"]]);
    expect(await logLength(stepId)).toBe(0);
  });

  it("an unknown credential is a plain 401, without the revoked code", async () => {
    const body = await expectError(await call("/agent/v1/commands?after=0", {}, "not-a-credential"), 401, /invalid agent credential/);
    expect(body.code).toBeUndefined();
  });

  it("a log chunk or report batch in flight when the revoke lands changes nothing in D1", async () => {
    const agent = await registerAgent("rev-flight");
    const id = await createDeployment([agent.name]);
    const [cmd] = (await pull(agent, 0)).commands;
    const stepId = cmd.steps[0].stepId;
    await revokeInD1Only(agent);

    // Past the Worker's credential check (as if it happened just before the revoke).
    await expect(appendLog(env, agent.agentId, stepId, 0, enc.encode("in flight"))).rejects.toSatisfy(
      (e: unknown) => e instanceof HttpError && e.status === 401 && e.extra.code === AGENT_REVOKED,
    );
    expect(await logLength(stepId)).toBe(0);
    // Even past that check (the revoke landing between the check and the write): the
    // write itself is guarded.
    expect(await tryAppendAt(env, stepId, 0, enc.encode("in flight"))).toBe(false);
    expect(await logLength(stepId)).toBe(0);
    const outcome = await stub(agent).receiveReports(agent.agentId, [startedReport(cmd, 0), finishedReport(cmd, 0, "succeeded", 0)], Date.now());
    expect(outcome).toMatchObject({ ok: true }); // the channel did not know yet…
    await runDurableObjectAlarm(stub(agent));
    const view = await deploymentView(id);
    expect(view.status).toBe("queued"); // …but D1 took none of it
    expect(view.steps[0]).toMatchObject({ status: "pending", exitCode: null });
  });

  it("a channel that was not told closes the agent's socket and ends its work at its next sweep, never marking it online", async () => {
    const agent = await registerAgent("rev-socket");
    const socket = await TestSocket.open(agent);
    socket.hello();
    await socket.next("welcome");
    const id = await createDeployment([agent.name]);
    await socket.next("commands");
    await revokeInD1Only(agent);
    await env.DB.prepare("UPDATE agents SET status = 'offline' WHERE id = ?").bind(agent.agentId).run();

    await withClockAhead(1000, async () => {
      socket.ws.send("ping");
      await socket.until(() => socket.raw.includes("pong"), "pong");
      expect(await runDurableObjectAlarm(stub(agent))).toBe(true);
    });
    await socket.until(() => socket.closed, "the socket to close");
    expect(socket.closed).toEqual({ code: 4003, reason: "agent revoked" });
    const row = await env.DB.prepare("SELECT status FROM agents WHERE id = ?").bind(agent.agentId).first<{ status: string }>();
    expect(row?.status).toBe("offline");
    await eventually(async () => (await deploymentView(id)).steps[0].status === "canceled", "the step canceled");
    await runInDurableObject(stub(agent), (_i: AgentChannel, state) => {
      expect(state.storage.sql.exec("SELECT count(*) AS n FROM commands WHERE finished_at IS NULL").one().n).toBe(0);
    });
  });

  it("a hello on a socket opened before the revoke does not mark the agent online; the channel ends its work", async () => {
    const agent = await registerAgent("rev-hello");
    const id = await createDeployment([agent.name]);
    const socket = await TestSocket.open(agent);
    await revokeInD1Only(agent);
    socket.hello();
    await socket.until(() => socket.closed, "the socket to close");
    expect(socket.closed?.code).toBe(4003);
    const row = await env.DB.prepare("SELECT status FROM agents WHERE id = ?").bind(agent.agentId).first<{ status: string }>();
    expect(row?.status).toBe("offline");
    await eventually(async () => (await deploymentView(id)).steps[0].status === "canceled", "the step canceled");
  });

  it("a DELETE whose call to the channel fails still revokes and ends the work in D1 (503: repeat it)", async () => {
    const agent = await registerAgent("rev-503");
    const id = await createDeployment([agent.name]);
    // Break the channel: it now believes it belongs to another agent and refuses the call.
    await runInDurableObject(stub(agent), (_i: AgentChannel, state) => {
      state.storage.sql.exec("UPDATE channel_meta SET value = 'someone-else' WHERE key = 'agent_id'");
      expect(openLedger(state.storage).agentId()).toBe("someone-else");
    });
    const res = await call(`/api/v1/agents/${agent.agentId}`, { method: "DELETE" });
    await expectError(res, 503, /repeat the request/);
    const view = await deploymentView(id);
    expect(view.steps.map((s) => [s.status, s.reason])).toEqual([["canceled", "agent revoked"]]);
    expect(view.status).toBe("failed");
    await expectError(await agentCall(agent, "/agent/v1/commands?after=0"), 401, /revoked/);
  });

  it("a log upload to a step that has ended is refused with 410; a retry of bytes already held still answers 200", async () => {
    const agent = await registerAgent("rev-ended");
    await createDeployment([agent.name]);
    const [cmd] = (await pull(agent, 0)).commands;
    const stepId = cmd.steps[0].stepId;
    expect((await upload(agent, stepId, 0, "all of it\n")).status).toBe(200);
    expect((await postReports(agent, [startedReport(cmd, 0), finishedReport(cmd, 0, "succeeded", 0)])).status).toBe(200);

    const body = await expectError(await upload(agent, stepId, 10, "more\n"), 410, /ended/);
    expect(body.length).toBe(10);
    const again = await upload(agent, stepId, 0, "all of it\n");
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ length: 10 });
    expect(await logLength(stepId)).toBe(10);
  });

  it("a step failed as agent-lost still takes its log (its real result may still come)", async () => {
    const agent = await registerAgent("rev-lost");
    const id = await createDeployment([agent.name]);
    const [cmd] = (await pull(agent, 0)).commands;
    const stepId = cmd.steps[0].stepId;
    await env.DB.prepare("UPDATE deployment_steps SET status = 'failed', reason = 'agent-lost' WHERE id = ?").bind(stepId).run();
    expect((await upload(agent, stepId, 0, "late but wanted\n")).status).toBe(200);
    expect(await logLength(stepId)).toBe(16);
    expect(id).toBeTruthy();
  });
});
