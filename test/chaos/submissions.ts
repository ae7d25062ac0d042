// The chaos run's deployments: random bodies (one or two agents, a few shell steps that
// count their runs in a file), submitted through the API fault proxy with an
// Idempotency-Key and retried until accepted; some repeated after they had succeeded.
import { join } from "node:path";
import { sleep } from "../support/local-server.ts";
import type { AgentState } from "./agent-fleet.ts";
import type { ApiClient } from "./api-client.ts";
import type { ChaosConfig } from "./config.ts";
import type { FaultProxy } from "./fault-proxy.ts";

export type Submission = {
  index: number;
  key: string;
  agents: string[];
  steps: number; // per agent
  id: string | null;
  attempts: number;
  error: string | null;
  replayed: { id: string | null; status: number | null; error: string | null } | null;
};

export class DeploymentSubmitter {
  readonly submissions: Submission[] = [];
  readonly #cfg: ChaosConfig;
  readonly #random: () => number;
  readonly #runId: string;
  readonly #execDir: string;
  readonly #agents: readonly AgentState[];
  readonly #api: ApiClient;
  readonly #apiProxy: FaultProxy;

  constructor(opts: { cfg: ChaosConfig; random: () => number; runId: string; execDir: string; agents: readonly AgentState[]; api: ApiClient; apiProxy: FaultProxy }) {
    this.#cfg = opts.cfg;
    this.#random = opts.random;
    this.#runId = opts.runId;
    this.#execDir = opts.execDir;
    this.#agents = opts.agents;
    this.#api = opts.api;
    this.#apiProxy = opts.apiProxy;
  }

  async submitAll(startedAt: number): Promise<void> {
    const cfg = this.#cfg;
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
        await this.#submit(i);
      }
    };
    await Promise.all(Array.from({ length: cfg.submitConcurrency }, worker));
  }

  #deploymentBody(i: number) {
    const cfg = this.#cfg;
    const random = this.#random;
    const agents = this.#agents;
    const first = Math.floor(random() * agents.length);
    const targets = [agents[first].name];
    if (agents.length > 1 && random() < cfg.multiAgentShare) targets.push(agents[(first + 1 + Math.floor(random() * (agents.length - 1))) % agents.length].name);
    const steps = cfg.stepsMin + Math.floor(random() * (cfg.stepsMax - cfg.stepsMin + 1));
    // one count file per agent; deployments on two agents share a file (appends of one short line are atomic)
    const file = join(this.#execDir, targets.length === 1 ? `executions-${targets[0]}.txt` : "executions-shared.txt");
    return {
      name: `chaos-${this.#runId}-d${i}`,
      agents: targets,
      agentLostAfterSeconds: cfg.agentLostAfterSeconds,
      steps: Array.from({ length: steps }, (_, s) => ({
        name: `s${s + 1}`,
        type: "shell" as const,
        command: `echo "$OUTPOST_STEP_ID" >> '${file}'; sleep ${(random() * cfg.stepSleepMaxMs / 1000).toFixed(3)}; echo "out-$OUTPOST_STEP_ID"`,
      })),
    };
  }

  async #submit(i: number): Promise<void> {
    const body = this.#deploymentBody(i);
    const sub: Submission = { index: i, key: body.name, agents: body.agents, steps: body.steps.length, id: null, attempts: 0, error: null, replayed: null };
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
        await sleep(300 + this.#random() * 1_500);
      }
      return { id: null, status: null, error: `gave up after 180 s: ${last}` };
    };
    const first = await post();
    sub.id = first.id;
    sub.error = first.error;
    if (sub.id && this.#random() < this.#cfg.replayShare) sub.replayed = await post(); // a client repeating a request that had succeeded
  }
}
