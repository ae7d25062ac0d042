// The chaos run's deployments: planned from the seed (plan.ts: one or two agents, a few
// shell steps that count their runs in a file, some printing several log chunks, some
// timing out), submitted through the API fault proxy with an Idempotency-Key and
// retried until accepted; some repeated after they had succeeded.
import { join } from "node:path";
import { sleep } from "../support/local-server.ts";
import type { AgentState } from "./agent-fleet.ts";
import type { ApiClient } from "./api-client.ts";
import type { ChaosConfig } from "./config.ts";
import type { FaultProxy } from "./fault-proxy.ts";
import { deploymentBody, stepName, type DeploymentPlan, type StepKind, type StepPlan } from "./plan.ts";

export type Submission = {
  index: number;
  key: string;
  plan: DeploymentPlan;
  agents: string[];
  steps: number; // per agent
  id: string | null;
  attempts: number;
  error: string | null;
  replayed: { id: string | null; status: number | null; error: string | null } | null;
};

export class DeploymentSubmitter {
  readonly submissions: Submission[] = [];
  // Every plan of the run, made before anything is submitted: the ordinary deployments,
  // then the agent-lost scenarios' (submitted by agent-lost.ts).
  plans: DeploymentPlan[] = [];
  lostPlans: DeploymentPlan[] = [];
  readonly #cfg: ChaosConfig;
  readonly #random: () => number;
  readonly #runId: string;
  readonly #execDir: string;
  readonly #agents: readonly AgentState[];
  readonly #api: ApiClient;
  readonly #apiProxy: FaultProxy;
  readonly #onCreated: (id: string, plan: DeploymentPlan) => void;

  constructor(opts: {
    cfg: ChaosConfig;
    random: () => number;
    runId: string;
    execDir: string;
    agents: readonly AgentState[];
    api: ApiClient;
    apiProxy: FaultProxy;
    onCreated?: (id: string, plan: DeploymentPlan) => void;
  }) {
    this.#cfg = opts.cfg;
    this.#random = opts.random;
    this.#runId = opts.runId;
    this.#execDir = opts.execDir;
    this.#agents = opts.agents;
    this.#api = opts.api;
    this.#apiProxy = opts.apiProxy;
    this.#onCreated = opts.onCreated ?? (() => {});
  }

  // Once the agents are registered: every plan, from the seed alone.
  makePlans(): void {
    const names = this.#agents.map((a) => a.name);
    const cfg = this.#cfg;
    // a fixed number of deployments with a step timeout (at least one when the share is not 0)
    const withTimeout = new Set(shuffled(Array.from({ length: cfg.deployments }, (_, i) => i), this.#random).slice(0, cfg.timeoutShare > 0 ? Math.max(1, Math.round(cfg.deployments * cfg.timeoutShare)) : 0));
    this.plans = Array.from({ length: cfg.deployments }, (_, i) => makePlan(cfg, this.#random, names, `chaos-${this.#runId}-d${i}`, withTimeout.has(i)));
    // at least one multi-chunk log among the ordinary deployments when the share is not 0
    if (cfg.bigLogShare > 0 && !this.plans.some((p) => p.steps.some((s) => s.kind === "big"))) {
      const p = this.plans.find((p) => p.steps[0].kind === "ok") ?? this.plans[0];
      const s = p.steps[0];
      Object.assign(s, { kind: "big", name: stepName(s.position, "big"), timeoutSeconds: null, bigBytes: Math.round(between(this.#random, cfg.bigLogMinKiB, cfg.bigLogMaxKiB) * 1024) });
      if (p.expect === "timeout" && !p.steps.some((x) => x.kind === "timeout")) p.expect = "succeeded";
    }
    this.lostPlans = Array.from({ length: this.#cfg.agentLostRuns }, (_, k) =>
      makeAgentLostPlan(this.#cfg, this.#random, names[k % names.length], `chaos-${this.#runId}-lost${k}`, join(this.#execDir, `gate-lost${k}`)),
    );
  }

  async submitAll(startedAt: number): Promise<void> {
    const cfg = this.#cfg;
    if (this.plans.length !== cfg.deployments) this.makePlans();
    // spread over 90% of the phase; a final burst lands just before the last fault
    // (a server kill 1.5 s before the end), so the settle time measures a real recovery
    const spread = cfg.faultSeconds * 1000 * 0.9;
    const burst = Math.max(2, Math.round(cfg.deployments * 0.05));
    let next = 0;
    const worker = async () => {
      for (;;) {
        const i = next++;
        if (i >= cfg.deployments) return;
        const due = i >= cfg.deployments - burst ? startedAt + Math.max(0, cfg.faultSeconds * 1000 - 2_500) : startedAt + (i * spread) / cfg.deployments;
        if (Date.now() < due) await sleep(due - Date.now());
        await this.submit(this.plans[i], i);
      }
    };
    await Promise.all(Array.from({ length: cfg.submitConcurrency }, worker));
  }

  // POSTs one planned deployment through the API fault proxy, retried with its
  // Idempotency-Key until accepted; some repeated after they had succeeded.
  async submit(plan: DeploymentPlan, index: number): Promise<Submission> {
    const body = deploymentBody(plan, this.#execDir);
    const sub: Submission = { index, key: plan.key, plan, agents: plan.agents, steps: plan.steps.length, id: null, attempts: 0, error: null, replayed: null };
    this.submissions.push(sub);
    const post = async (): Promise<{ id: string | null; status: number | null; error: string | null }> => {
      const t0 = Date.now();
      let last = "";
      while (Date.now() - t0 < 180_000) {
        sub.attempts++;
        try {
          const r = await this.#api.http(this.#apiProxy.url, "POST", "/api/v1/deployments", body, { "idempotency-key": sub.key }, 15_000);
          if ((r.status === 200 || r.status === 201) && typeof r.json?.id === "string") return { id: r.json.id, status: r.status, error: null };
          last = `${r.status} ${r.text.slice(0, 200)}`;
          if (r.status < 500 && r.status !== 429) return { id: null, status: r.status, error: last };
        } catch (e: any) {
          last = String(e?.cause?.code ?? e?.name ?? e);
        }
        await sleep(300 + Math.random() * 1_500);
      }
      return { id: null, status: null, error: `gave up after 180 s: ${last}` };
    };
    const first = await post();
    sub.id = first.id;
    sub.error = first.error;
    if (sub.id) this.#onCreated(sub.id, plan);
    if (sub.id && plan.replay) sub.replayed = await post(); // a client repeating a request that had succeeded
    return sub;
  }
}

const between = (r: () => number, lo: number, hi: number) => lo + r() * (hi - lo);

function shuffled<T>(items: T[], random: () => number): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

// One ordinary deployment: one or two agents, stepsMin..stepsMax steps, some of them
// big, some retry "safe", and (withTimeout) one step at a random position that times out.
export function makePlan(cfg: ChaosConfig, random: () => number, agentNames: readonly string[], key: string, withTimeout: boolean): DeploymentPlan {
  const first = Math.floor(random() * agentNames.length);
  const agents = [agentNames[first]];
  if (agentNames.length > 1 && random() < cfg.multiAgentShare) agents.push(agentNames[(first + 1 + Math.floor(random() * (agentNames.length - 1))) % agentNames.length]);
  const count = cfg.stepsMin + Math.floor(random() * (cfg.stepsMax - cfg.stepsMin + 1));
  const timeoutAt = withTimeout ? 1 + Math.floor(random() * count) : 0;
  const steps: StepPlan[] = [];
  for (let p = 1; p <= count; p++) {
    const r = random();
    const kind: StepKind = p === timeoutAt ? "timeout" : r < cfg.bigLogShare ? "big" : r < cfg.bigLogShare + cfg.pluginShare ? "plugin" : "ok";
    steps.push({
      name: stepName(p, kind),
      position: p,
      kind,
      // a timed-out step is never re-run: "never" keeps its expectation one run
      retry: kind !== "timeout" && random() < cfg.safeShare ? "safe" : "never",
      timeoutSeconds: kind === "timeout" ? 1 + Math.floor(random() * 2) : null,
      sleepSeconds: (random() * cfg.stepSleepMaxMs) / 1000,
      bigBytes: kind === "big" ? Math.round(between(random, cfg.bigLogMinKiB, cfg.bigLogMaxKiB) * 1024) : 0,
    });
  }
  const replay = random() < cfg.replayShare;
  return { key, agents, agentLostAfterSeconds: cfg.agentLostAfterSeconds, steps, expect: timeoutAt ? "timeout" : "succeeded", gateFile: null, replay };
}

// The agent-lost scenario's deployment: a gate step (running until the run opens its
// gate, after the deadline expired), a big step and an ordinary one, all retry "safe",
// with a short agentLostAfterSeconds.
export function makeAgentLostPlan(cfg: ChaosConfig, random: () => number, agent: string, key: string, gateFile: string): DeploymentPlan {
  const kinds: StepKind[] = ["gate", "big", "ok"];
  const steps = kinds.map((kind, i) => ({
    name: stepName(i + 1, kind),
    position: i + 1,
    kind,
    retry: "safe" as const,
    timeoutSeconds: null,
    sleepSeconds: (random() * cfg.stepSleepMaxMs) / 1000,
    bigBytes: kind === "big" ? Math.round(between(random, cfg.bigLogMinKiB, cfg.bigLogMaxKiB) * 1024) : 0,
  }));
  return { key, agents: [agent], agentLostAfterSeconds: cfg.agentLostShortSeconds, steps, expect: "agent-lost", gateFile, replay: random() < cfg.replayShare };
}
