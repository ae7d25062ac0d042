// When D1 refuses a projection, applied reports wait in the DO's outbox and the
// alarm writes them later; the agent's acknowledgement never depends on D1.
import { createScheduledController, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import worker from "../../worker/index.ts";
import { describe, expect, it } from "vitest";
import type { AgentChannel } from "../../durable-objects/agent-channel.ts";
import { openLedger } from "../../durable-objects/ledger.ts";
import type { Report } from "../../schema/agent-api.ts";
import { createDeployment as createRows } from "../../worker/deployments/create.ts";
import { createDeploymentBody } from "../../schema/api.ts";
import { d1 } from "../../d1/db.ts";
import { agentCall, call, createDeployment, registerAgent, type DeployPull as PullResponse } from "./helpers.ts";

describe("projection retries", () => {
  it("keeps reports in the outbox while D1 fails and drains them from the alarm", async () => {
    const agent = await registerAgent("outage");
    const id = await createDeployment([agent.name]);
    const { commands } = (await (await agentCall(agent, "/agent/v1/commands?after=0")).json()) as PullResponse;
    const step = commands[0].steps[0];
    const reports: Report[] = [
      { type: "step-started", id: `${step.stepId}:started`, deploymentId: id, stepId: step.stepId, at: Date.now() },
      { type: "step-finished", id: `${step.stepId}:finished`, deploymentId: id, stepId: step.stepId, status: "succeeded", exitCode: 0, reason: null, at: Date.now() },
    ];

    // An honest D1 failure: the table the projection writes to is gone for a while.
    await env.DB.exec("ALTER TABLE deployments RENAME TO deployments_offline");
    const res = await agentCall(agent, "/agent/v1/reports", { method: "POST", body: JSON.stringify({ reports, sentAt: Date.now() }) });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ acked: reports.map((r) => r.id) });

    const stub = env.AGENT_CHANNEL.get(env.AGENT_CHANNEL.idFromName(agent.agentId));
    await runInDurableObject(stub, async (_i: AgentChannel, state) => {
      const rows = state.storage.sql.exec("SELECT kind, key, attempts, last_error FROM projection_outbox ORDER BY ord").toArray();
      expect(rows.map((r) => [r.kind, r.key])).toEqual(reports.map((r) => ["report", r.id]));
      for (const r of rows) {
        expect(r.attempts).toBe(1);
        expect(String(r.last_error)).toMatch(/deployments/);
      }
      expect(await state.storage.getAlarm()).not.toBeNull();
    });

    // Still failing: the alarm records another attempt and reschedules.
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    await runInDurableObject(stub, async (_i: AgentChannel, state) => {
      expect(openLedger(state.storage).outboxStats()).toEqual({ pending: 2, maxAttempts: 2 });
      expect(await state.storage.getAlarm()).not.toBeNull();
    });

    await env.DB.exec("ALTER TABLE deployments_offline RENAME TO deployments");
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    await runInDurableObject(stub, (_i: AgentChannel, state) => {
      expect(openLedger(state.storage).outboxStats().pending).toBe(0);
    });
    const view = (await (await call(`/api/v1/deployments/${id}`)).json()) as { status: string; steps: { status: string; exitCode: number }[] };
    expect(view.status).toBe("succeeded");
    expect(view.steps[0]).toMatchObject({ status: "succeeded", exitCode: 0 });
  });
});

describe("cron re-dispatch", () => {
  it("stores a command its agent's channel never received", async () => {
    const agent = await registerAgent("never-stored");
    // The deployment's D1 batch committed, and the request died before any dispatch.
    const rows = await createRows(d1(env), env.DB, createDeploymentBody.parse({ agents: [agent.name], steps: [{ name: "x", type: "shell", command: "true" }] }), Date.now() - 11_000);
    const stub = env.AGENT_CHANNEL.get(env.AGENT_CHANNEL.idFromName(agent.agentId));
    await runInDurableObject(stub, (_i: AgentChannel, state) => {
      expect(openLedger(state.storage).head()).toBe(0); // the channel has never heard of it
    });
    await worker.scheduled(createScheduledController({ cron: "* * * * *" }), env);
    const { commands } = (await (await agentCall(agent, "/agent/v1/commands?after=0")).json()) as PullResponse;
    expect(commands.map((c) => [c.deploymentId, c.seq])).toEqual([[rows.id, 1]]);
    const target = await env.DB.prepare("SELECT dispatched_at AS at FROM deployment_targets WHERE deployment_id = ?").bind(rows.id).first<{ at: number | null }>();
    expect(target?.at).not.toBeNull();
  });

  it("re-dispatches targets whose dispatch never completed", async () => {
    const agent = await registerAgent("late-dispatch");
    const id = await createDeployment([agent.name]);
    // Simulate a dispatch interrupted before the DO stored the command, 11 s ago.
    await env.DB.prepare("UPDATE deployment_targets SET dispatched_at = NULL WHERE deployment_id = ?").bind(id).run();
    await env.DB.prepare("UPDATE deployments SET created_at = created_at - 11000 WHERE id = ?").bind(id).run();
    const fresh = await createDeployment([agent.name]);
    await env.DB.prepare("UPDATE deployment_targets SET dispatched_at = NULL WHERE deployment_id = ?").bind(fresh).run();

    await worker.scheduled(createScheduledController({ cron: "* * * * *" }), env);

    const rows = await env.DB.prepare("SELECT deployment_id, dispatched_at FROM deployment_targets WHERE agent_id = ?").bind(agent.agentId).all<{ deployment_id: string; dispatched_at: number | null }>();
    const byId = Object.fromEntries(rows.results.map((r) => [r.deployment_id, r.dispatched_at]));
    expect(byId[id]).not.toBeNull();
    expect(byId[fresh]).toBeNull(); // too young: its first dispatch may still be running
    // The command was already stored once; re-dispatch did not duplicate it.
    const { commands } = (await (await agentCall(agent, "/agent/v1/commands?after=0")).json()) as PullResponse;
    expect(commands.map((c) => c.deploymentId)).toEqual([id, fresh]);
  });
});
