// Watches results while the run goes on, to catch a report applied twice. A step's
// final state cannot show that by itself (state only moves forward), but an
// application leaves a trace: the step's reported_at (when the server received its
// final result), finished_at, exit code, reason. So each terminal step's result is
// sampled when first seen terminal (deployments polled every second or so) and again
// at the end — through the API after settling, then straight from D1 — and any change
// is a re-application. The one change allowed: a step failed as exactly "agent-lost"
// takes its real result once ("agent-lost; result arrived later…"). Deployments the
// same: status and finishedAt never change once terminal.
import { sleep } from "../support/local-server.ts";
import type { ApiClient } from "./api-client.ts";
import { AGENT_LOST_REASON, LATE_REASON } from "./plan.ts";

export type StepResult = { status: string; exitCode: number | null; reason: string | null; finishedAt: number | null; reportedAt: number | null };
export type DeploymentResult = { status: string; finishedAt: number | null };
export type Sample<T> = T & { at: number; source: string };
export type StepHistory = { deploymentId: string; agent: string; name: string; samples: Sample<StepResult>[] };
export type DeploymentHistory = { samples: Sample<DeploymentResult>[] };

const TERMINAL_STEP = new Set(["succeeded", "failed", "interrupted", "skipped", "canceled"]);
const TERMINAL_DEPLOYMENT = new Set(["succeeded", "failed", "canceled"]);

const ms = (iso: unknown): number | null => (typeof iso === "string" ? Date.parse(iso) : null);

export function stepResultOf(s: any): StepResult {
  return { status: s.status, exitCode: s.exitCode ?? null, reason: s.reason ?? null, finishedAt: ms(s.finishedAt), reportedAt: ms(s.reportedAt) };
}

const sameStep = (a: StepResult, b: StepResult) =>
  a.status === b.status && a.exitCode === b.exitCode && a.reason === b.reason && a.finishedAt === b.finishedAt && a.reportedAt === b.reportedAt;
const sameDeployment = (a: DeploymentResult, b: DeploymentResult) => a.status === b.status && a.finishedAt === b.finishedAt;

export class ResultObserver {
  readonly steps = new Map<string, StepHistory>(); // step id → distinct terminal results, in the order seen
  readonly deployments = new Map<string, DeploymentHistory>();
  readonly #watched = new Map<string, { lastPoll: number }>();
  reads = 0; // deployment views read while the run went on
  #stopped = false;
  #loop: Promise<void> | null = null;

  watch(deploymentId: string): void {
    if (!this.#watched.has(deploymentId)) this.#watched.set(deploymentId, { lastPoll: 0 });
  }

  // Records what a deployment view shows (from the poll loop, the settle loop, the final reads).
  recordView(view: any, source: string, at = Date.now()): void {
    if (!view?.id) return;
    for (const s of view.steps ?? []) if (TERMINAL_STEP.has(s.status)) this.recordStep(s.id, { deploymentId: view.id, agent: s.agent, name: s.name }, stepResultOf(s), source, at);
    if (TERMINAL_DEPLOYMENT.has(view.status)) this.recordDeployment(view.id, { status: view.status, finishedAt: ms(view.finishedAt) }, source, at);
  }

  recordStep(stepId: string, where: { deploymentId: string; agent: string; name: string }, r: StepResult, source: string, at = Date.now()): void {
    let h = this.steps.get(stepId);
    if (!h) this.steps.set(stepId, (h = { ...where, samples: [] }));
    const last = h.samples.at(-1);
    if (!last || !sameStep(last, r)) h.samples.push({ ...r, at, source });
  }

  recordDeployment(id: string, r: DeploymentResult, source: string, at = Date.now()): void {
    let h = this.deployments.get(id);
    if (!h) this.deployments.set(id, (h = { samples: [] }));
    const last = h.samples.at(-1);
    if (!last || !sameDeployment(last, r)) h.samples.push({ ...r, at, source });
  }

  // Polls open deployments every `openMs`, ended ones every `endedMs` (a late result,
  // a re-sent report, may still change them), until stop().
  start(api: ApiClient, opts: { openMs?: number; endedMs?: number } = {}): void {
    const openMs = opts.openMs ?? 1_000;
    const endedMs = opts.endedMs ?? 8_000;
    this.#loop = (async () => {
      while (!this.#stopped) {
        const t0 = Date.now();
        const due = [...this.#watched.entries()].filter(([id, w]) => {
          const ended = TERMINAL_DEPLOYMENT.has(this.deployments.get(id)?.samples.at(-1)?.status ?? "");
          return t0 - w.lastPoll >= (ended ? endedMs : openMs) - 50;
        });
        await pool(due, 4, async ([id, w]) => {
          if (this.#stopped) return;
          w.lastPoll = Date.now();
          // one try, short: a server being restarted is simply read next time
          const r = await api.http(api.base, "GET", `/api/v1/deployments/${id}`, undefined, {}, 5_000).catch(() => null);
          if (r?.status === 200) {
            this.reads++;
            this.recordView(r.json, "poll");
          }
        });
        const wait = openMs - (Date.now() - t0);
        if (wait > 0) await sleep(wait);
      }
    })();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
  }
}

export type Reapplication = { what: string };

// The changes the histories show that no single application explains.
export function findReapplications(
  steps: ReadonlyMap<string, StepHistory>,
  deployments: ReadonlyMap<string, DeploymentHistory>,
  t0: number,
): { steps: string[]; deployments: string[] } {
  const rel = (at: number) => `+${((at - t0) / 1000).toFixed(1)}s`;
  const show = (s: Sample<StepResult>) =>
    `${s.status} exit ${s.exitCode} reason ${JSON.stringify(s.reason)} finishedAt ${s.finishedAt} reportedAt ${s.reportedAt} (${s.source} ${rel(s.at)})`;
  const stepChanges: string[] = [];
  for (const [id, h] of steps) {
    const [first, ...rest] = h.samples;
    if (!first || rest.length === 0) continue;
    // the one allowed change: exactly "agent-lost", then the real result, late
    const late = first.status === "failed" && first.reason === AGENT_LOST_REASON && rest.length === 1 && (rest[0].reason ?? "").startsWith(LATE_REASON);
    if (late) continue;
    stepChanges.push(`step ${id} (deployment ${h.deploymentId}, ${h.agent}/${h.name}): first seen terminal ${show(first)}; then ${rest.map(show).join("; then ")}`);
  }
  const depChanges: string[] = [];
  for (const [id, h] of deployments) {
    const [first, ...rest] = h.samples;
    if (!first || rest.length === 0) continue;
    const show = (s: Sample<DeploymentResult>) => `${s.status} finishedAt ${s.finishedAt} (${s.source} ${rel(s.at)})`;
    depChanges.push(`deployment ${id}: first seen ended ${show(first)}; then ${rest.map(show).join("; then ")}`);
  }
  return { steps: stepChanges, deployments: depChanges };
}

// A second trace, in D1 alone, for re-applications too quick for the sampling: a
// single-agent deployment ends in the projection page that applies its last result, at
// that page's time (deployments.updated_at), so no step of it was received later
// (reported_at) — unless it was applied again after the deployment ended, or it is a
// late result (agent-lost). (Two agents' channels project concurrently: not checked.)
export function reportedAfterEnd(
  steps: ReadonlyMap<string, { deploymentId: string; agent: string; name: string; reason: string | null; reportedAt: number | null }>,
  deployments: ReadonlyMap<string, { name: string; status: string; updatedAt: number }>,
): string[] {
  const agents = new Map<string, Set<string>>();
  for (const s of steps.values()) {
    if (!agents.has(s.deploymentId)) agents.set(s.deploymentId, new Set());
    agents.get(s.deploymentId)!.add(s.agent);
  }
  const out: string[] = [];
  for (const [id, s] of steps) {
    const dep = deployments.get(s.deploymentId);
    if (!dep || !TERMINAL_DEPLOYMENT.has(dep.status) || agents.get(s.deploymentId)!.size !== 1) continue;
    if (s.reportedAt === null || (s.reason ?? "").startsWith(LATE_REASON)) continue;
    if (s.reportedAt > dep.updatedAt) {
      out.push(`step ${id} (deployment ${s.deploymentId} ${dep.name}, ${s.agent}/${s.name}): D1 reported_at ${s.reportedAt} is ${s.reportedAt - dep.updatedAt} ms after its deployment ended (updated_at ${dep.updatedAt})`);
    }
  }
  return out;
}

async function pool<T>(items: T[], n: number, fn: (t: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (i < items.length) await fn(items[i++]);
  }));
}
