// The projection's SQL (d1/projection.ts) held against its rules in plain code
// (durable-objects/rules.ts applyFinished, deploymentOutcome) as the oracle: random
// histories of reports and server decisions are projected into real D1, in random order,
// one job at a time or in pages of several (as the channel's drain does: a run of reports
// becomes set-based statements), and every step and deployment must end as the rules say.
// docs/protocol.md §Projection.
import { env } from "cloudflare:workers";
import { seededRandom as prng } from "../support/prng.ts";
import { describe, expect, it } from "vitest";
import { projectJobs, type ProjectionJob } from "../../d1/projection.ts";
import { applyFinished, deploymentOutcome, type StepResult } from "../../durable-objects/rules.ts";
import { reportIds, type Report } from "../../schema/agent-api.ts";
import { FINAL_STEP_STATUSES, SERVER_REASONS, type FinalStepStatus } from "../../schema/steps.ts";
import { createDeployment, registerAgent } from "./helpers.ts";


type Model = { steps: Map<string, StepResult>; deployment: "queued" | "running" | "succeeded" | "failed" | "canceled" };

// The oracle: what each job does to the model, by the rules in plain code.
function applyToModel(m: Model, job: ProjectionJob): void {
  if (job.kind === "report") {
    const current = m.steps.get(job.report.stepId)!;
    if (job.report.type === "step-started") {
      if (current.status === "pending") m.steps.set(job.report.stepId, { status: "running", reason: null });
    } else {
      const next = applyFinished(current, { status: job.report.status, reason: job.report.reason });
      if (next) m.steps.set(job.report.stepId, next);
    }
  } else {
    const reason = job.kind === "agent-lost" ? SERVER_REASONS.agentLost : SERVER_REASONS.revoked;
    const status = job.kind === "agent-lost" ? "failed" : "canceled";
    for (const [id, s] of m.steps) if (s.status === "pending" || s.status === "running") m.steps.set(id, { status, reason });
  }
  // A terminal deployment never changes (its steps may still take a late result).
  if (m.deployment === "queued" || m.deployment === "running") {
    const steps = [...m.steps.values()];
    const outcome = deploymentOutcome(steps);
    if (outcome) m.deployment = outcome;
    else if (m.deployment === "queued" && steps.some((s) => s.status !== "pending")) m.deployment = "running";
  }
}

describe("projection SQL against the rules", () => {
  it("ends every step and deployment as applyFinished and deploymentOutcome say, for random histories", async () => {
    const agent = await registerAgent("oracle");
    for (let seed = 1; seed <= 60; seed++) {
      const random = prng(seed);
      const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)];
      const stepCount = 1 + Math.floor(random() * 3);
      const id = await createDeployment([agent.name], Array.from({ length: stepCount }, (_, i) => ({ name: `s${i}`, command: "true" })));
      const stepIds = (await env.DB.prepare("SELECT id FROM deployment_steps WHERE deployment_id = ? ORDER BY position").bind(id).all<{ id: string }>()).results.map((r) => r.id);

      // A history: each step's reports (some missing, some repeated), maybe an
      // agent-lost decision, maybe a revoke, shuffled.
      const jobs: ProjectionJob[] = [];
      const now = Date.now();
      for (const stepId of stepIds) {
        const report = (r: Report): ProjectionJob => ({ kind: "report", report: r, at: now, receivedAt: now });
        if (random() < 0.8) jobs.push(report({ type: "step-started", id: reportIds.started(stepId), deploymentId: id, stepId, at: now }));
        const times = random() < 0.7 ? 1 : random() < 0.5 ? 0 : 2;
        for (let k = 0; k < times; k++) {
          const status: FinalStepStatus = pick(FINAL_STEP_STATUSES);
          jobs.push(report({ type: "step-finished", id: reportIds.finished(stepId), deploymentId: id, stepId, status, exitCode: status === "succeeded" ? 0 : 1, reason: random() < 0.5 ? null : `why ${k}`, at: now }));
        }
      }
      if (random() < 0.4) jobs.push({ kind: "agent-lost", deploymentId: id, at: now });
      if (random() < 0.15) jobs.push({ kind: "revoked", at: now });
      for (let i = jobs.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [jobs[i], jobs[j]] = [jobs[j], jobs[i]];
      }

      const model: Model = { steps: new Map(stepIds.map((s) => [s, { status: "pending", reason: null }])), deployment: "queued" };
      for (const job of jobs) applyToModel(model, job);
      // Odd seeds one job at a time, even ones in pages of 1 – 6 jobs.
      for (let i = 0; i < jobs.length; ) {
        const size = seed % 2 === 1 ? 1 : 1 + Math.floor(random() * 6);
        await projectJobs(env.DB, agent.agentId, jobs.slice(i, i + size), now);
        i += size;
      }

      const rows = (await env.DB.prepare("SELECT id, status, reason FROM deployment_steps WHERE deployment_id = ? ORDER BY position").bind(id).all<{ id: string; status: string; reason: string | null }>()).results;
      const what = `seed ${seed}: ${jobs.map((j) => (j.kind === "report" ? `${j.report.type}:${j.report.type === "step-finished" ? j.report.status : ""}@${stepIds.indexOf(j.report.stepId)}` : j.kind)).join(", ")}`;
      expect(rows.map((r) => ({ status: r.status, reason: r.reason })), what).toEqual(stepIds.map((s) => model.steps.get(s)));
      const dep = await env.DB.prepare("SELECT status FROM deployments WHERE id = ?").bind(id).first<{ status: string }>();
      expect(dep?.status, what).toBe(model.deployment);
    }
  });
});
