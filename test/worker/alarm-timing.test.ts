// When the channel's one alarm fires (durable-objects/alarm-schedule.ts): not only that
// one is set, but that it is set for the right time — a projection retry after its
// back-off, an agent-lost deadline at the deadline (ticking on the way, uptime.ts), the
// presence sweep after OUTPOST_OFFLINE_AFTER_MS.
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { AgentChannel } from "../../durable-objects/agent-channel.ts";
import { projectionBackoffMs } from "../../durable-objects/rules.ts";
import { UPTIME } from "../../durable-objects/uptime.ts";
import { createDeployment, eventually, finishedReport, pull, postReports, registerAgent, startedReport, TestSocket, tickAlarms, withClockAhead, type TestAgent } from "./helpers.ts";

const stub = (agent: TestAgent) => env.AGENT_CHANNEL.get(env.AGENT_CHANNEL.idFromName(agent.agentId));
const alarmAt = (agent: TestAgent) => runInDurableObject(stub(agent), (_i: AgentChannel, state) => state.storage.getAlarm());
const dueAt = (agent: TestAgent) =>
  runInDurableObject(stub(agent), (_i: AgentChannel, state) => state.storage.sql.exec<{ due_at: number }>("SELECT min(due_at) AS due_at FROM due_work").one().due_at);
const OFFLINE_AFTER_MS = 20_000; // vitest.worker.config.ts

describe("alarm timing", () => {
  it("retries a failed projection after its back-off: 1 s, then 2 s", async () => {
    const agent = await registerAgent("timing-projection");
    const id = await createDeployment([agent.name]);
    const [cmd] = (await pull(agent, 0)).commands;
    await env.DB.exec("ALTER TABLE deployments RENAME TO deployments_away");
    try {
      const before = Date.now();
      expect((await postReports(agent, [startedReport(cmd, 0), finishedReport(cmd, 0, "succeeded", 0)])).status).toBe(200);
      const first = (await alarmAt(agent))!;
      expect(first).toBeGreaterThanOrEqual(before + projectionBackoffMs(1) - 50);
      expect(first).toBeLessThanOrEqual(Date.now() + projectionBackoffMs(1));
      // The retry fails again: the next one waits twice as long, counted from then.
      const retriedAt = Date.now();
      await runDurableObjectAlarm(stub(agent));
      const second = (await alarmAt(agent))!;
      expect(second - retriedAt).toBeGreaterThanOrEqual(projectionBackoffMs(2) - 50);
      expect(second - retriedAt).toBeLessThanOrEqual(projectionBackoffMs(2) + 1_000);
    } finally {
      await env.DB.exec("ALTER TABLE deployments_away RENAME TO deployments");
    }
    await runDurableObjectAlarm(stub(agent));
    expect(id).toBeTruthy();
  });

  it("sets an offline agent's deadline at agentLostAfterSeconds and wakes no later than it, ticking at least every minute", async () => {
    const agent = await registerAgent("timing-deadline");
    const created = Date.now();
    await createDeployment([agent.name], undefined, { agentLostAfterSeconds: 300 });
    const due = await dueAt(agent);
    expect(due).toBeGreaterThanOrEqual(created + 300_000);
    expect(due).toBeLessThanOrEqual(Date.now() + 300_000);
    // Far from the deadline: the next wake is an uptime tick, a minute away at most.
    const alarm = (await alarmAt(agent))!;
    expect(alarm).toBeLessThanOrEqual(Date.now() + UPTIME.farTickMs);
    expect(alarm).toBeGreaterThan(Date.now() + UPTIME.farTickMs - 5_000);
    // The server stays up (its alarm runs on time) until 10 s before the deadline: the
    // deadline has not moved, and the next wake is the deadline or a few seconds off.
    await tickAlarms(stub(agent), 0, 290_000);
    expect(await dueAt(agent)).toBe(due);
    await withClockAhead(290_000, async () => {
      const next = (await alarmAt(agent))!;
      expect(next).toBeLessThanOrEqual(due);
      expect(next - Date.now()).toBeLessThanOrEqual(UPTIME.nearTickMs);
    });
  });

  it("sweeps presence OUTPOST_OFFLINE_AFTER_MS after a connection opens, and again after each sweep", async () => {
    const agent = await registerAgent("timing-sweep");
    const opened = Date.now();
    const socket = await TestSocket.open(agent);
    socket.hello();
    await socket.next("welcome");
    const first = (await alarmAt(agent))!;
    expect(first).toBeGreaterThanOrEqual(opened + OFFLINE_AFTER_MS - 50);
    expect(first).toBeLessThanOrEqual(Date.now() + OFFLINE_AFTER_MS);
    socket.ws.send("ping");
    await socket.until(() => socket.raw.includes("pong"), "pong");
    const swept = Date.now();
    await runDurableObjectAlarm(stub(agent));
    const next = (await alarmAt(agent))!;
    expect(next - swept).toBeGreaterThanOrEqual(OFFLINE_AFTER_MS - 50);
    expect(next - swept).toBeLessThanOrEqual(OFFLINE_AFTER_MS + 1_000);
    socket.ws.close(1000, "bye");
    await eventually(async () => (await alarmAt(agent)) !== undefined, "alarm read");
  });
});
