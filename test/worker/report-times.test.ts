// docs/protocol.md §Reports, "Times": startedAt / finishedAt say when the work happened on
// the agent, placed on the server's clock through the batch's sentAt (a constant skew
// cancels out), never before the deployment was created nor after the server heard of
// it; reportedAt says when the server heard of the result.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { agentCall, call, createDeployment, deploymentView, finishedReport, pull, registerAgent, startedReport, type Cmd as Command, type TestAgent } from "./helpers.ts";
import type { Report } from "../../schema/agent-api.ts";

const MIN = 60_000;

// Posts reports the way an agent whose clock is `skewMs` off would: its `at`s and its
// sentAt both on its own clock.
function postSkewed(agent: TestAgent, reports: Report[], skewMs: number) {
  const body = { reports: reports.map((r) => ({ ...r, at: r.at + skewMs })), sentAt: Date.now() + skewMs };
  return agentCall(agent, "/agent/v1/reports", { method: "POST", body: JSON.stringify(body) });
}

const at = (r: Report, ms: number): Report => ({ ...r, at: ms });
const stepTimes = async (id: string) => (await (await call(`/api/v1/deployments/${id}`)).json() as { steps: { startedAt: string; finishedAt: string; reportedAt: string }[] }).steps[0];
const ms = (iso: string | null) => (iso === null ? null : new Date(iso).getTime());

async function setUp(name: string, createdAgo = 0) {
  const agent = await registerAgent(name);
  const id = await createDeployment([agent.name]);
  if (createdAgo) await env.DB.prepare("UPDATE deployments SET created_at = created_at - ? WHERE id = ?").bind(createdAgo, id).run();
  const [cmd] = (await pull(agent, 0)).commands as Command[];
  const created = (await env.DB.prepare("SELECT created_at AS c FROM deployments WHERE id = ?").bind(id).first<{ c: number }>())!.c;
  return { agent, id, cmd, created };
}

describe("report times", () => {
  it("places an outage-time result when it happened, with reportedAt when it arrived, whatever the agent's skew", async () => {
    for (const skew of [0, -10 * MIN, 10 * MIN]) {
      const { agent, id, cmd } = await setUp(`times-${skew}`, 60 * MIN);
      const now = Date.now();
      // The step ran 45 to 40 minutes ago (by the agent's clock); the result arrives now.
      const res = await postSkewed(agent, [at(startedReport(cmd, 0), now - 45 * MIN), at(finishedReport(cmd, 0, "succeeded", 0), now - 40 * MIN)], skew);
      expect(res.status).toBe(200);
      const step = await stepTimes(id);
      const tolerance = 5_000; // request latency
      expect(Math.abs(ms(step.startedAt)! - (now - 45 * MIN))).toBeLessThan(tolerance);
      expect(Math.abs(ms(step.finishedAt)! - (now - 40 * MIN))).toBeLessThan(tolerance);
      expect(Math.abs(ms(step.reportedAt)! - now)).toBeLessThan(tolerance);
      // The deployment finished when its last step did, not when the server heard of it.
      expect(Math.abs(ms((await deploymentView(id)).finishedAt)! - (now - 40 * MIN))).toBeLessThan(tolerance);
    }
  });

  it("never puts a step before its deployment was created, nor after the server heard of it", async () => {
    const { agent, id, cmd, created } = await setUp("times-clamp", 5 * MIN);
    const now = Date.now();
    // An agent whose own report claims the work happened an hour before the deployment
    // existed, and ended in the future.
    const res = await postSkewed(agent, [at(startedReport(cmd, 0), now - 65 * MIN), at(finishedReport(cmd, 0, "succeeded", 0), now + 30 * MIN)], 0);
    expect(res.status).toBe(200);
    const step = await stepTimes(id);
    expect(ms(step.startedAt)).toBe(created);
    expect(ms(step.finishedAt)).toBe(ms(step.reportedAt));
    expect(ms(step.reportedAt)!).toBeGreaterThanOrEqual(now);
  });
});
