// The chaos run: a real server (wrangler dev) with test hooks, agents behind a
// fault proxy, many deployments submitted (Idempotency-Key, retried), faults
// injected on a random schedule, then heal, settle, and collect what the checks need.
// The parts: agent-fleet.ts (agent processes), submissions.ts (deployments),
// fault-injector.ts (faults and heal), collect.ts (settle and final collection).
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestServer } from "../support/local-server.ts";
import { AgentFleet, type AgentState } from "./agent-fleet.ts";
import { ApiClient, type Http } from "./api-client.ts";
import { countD1Deployments, readExecutions, readJournals, readLogs, settle, type D1Deployments, type JournalState } from "./collect.ts";
import { rngFrom, type ChaosConfig } from "./config.ts";
import { FaultInjector, type FaultTally } from "./fault-injector.ts";
import { FaultProxy } from "./fault-proxy.ts";
import { buildSchedule } from "./schedule.ts";
import { DeploymentSubmitter, type Submission } from "./submissions.ts";

export type Anomaly = { at: number; what: string };

export type RunData = {
  cfg: ChaosConfig;
  runId: string;
  work: string;
  execDir: string;
  agents: AgentState[];
  submissions: Submission[];
  faults: FaultTally;
  proxyStats: FaultProxy["stats"];
  apiProxyStats: FaultProxy["stats"];
  anomalies: Anomaly[];
  startedAt: number;
  faultPhaseEndedAt: number;
  lastFaultAt: number;
  healedAt: number;
  settledAt: number | null; // null: did not settle in time
  settleWaitedMs: number;
  views: Map<string, any>; // deployment id → final view
  logs: Map<string, string | null>; // step id → log text (null: could not read)
  channels: Map<string, Http>; // agent name → GET /api/v1/agents/:id answer
  journals: Map<string, JournalState | { error: string }>;
  executions: Map<string, number>; // step id → times it ran (from the count files)
  d1Deployments: D1Deployments;
  endedAt: number;
};

export class ChaosRun {
  readonly cfg: ChaosConfig;
  readonly random: () => number;
  readonly log: (msg: string) => void;
  readonly runId = Math.random().toString(36).slice(2, 8);
  readonly work = mkdtempSync(join(tmpdir(), "outpost-chaos-"));
  readonly execDir = join(this.work, "exec");
  readonly server = new TestServer(this.work);
  readonly proxy = new FaultProxy({ targetPort: () => this.server.port });
  readonly apiProxy = new FaultProxy({ targetPort: () => this.server.port });
  readonly api = new ApiClient(this.server);
  readonly anomalies: Anomaly[] = [];
  readonly fleet: AgentFleet;
  readonly injector: FaultInjector;
  readonly submitter: DeploymentSubmitter;
  #t0 = Date.now();
  #savedEnv: Record<string, string | undefined> = {};

  constructor(cfg: ChaosConfig, log: (msg: string) => void = (m) => process.stderr.write(m + "\n")) {
    this.cfg = cfg;
    this.random = rngFrom(cfg.seed);
    this.log = (m) => log(`[chaos +${((Date.now() - this.#t0) / 1000).toFixed(1)}s] ${m}`);
    const anomaly = (what: string) => this.#anomaly(what);
    this.fleet = new AgentFleet({ server: this.server, log: this.log, anomaly, quiet: () => this.injector.stopped });
    this.injector = new FaultInjector({ server: this.server, proxy: this.proxy, apiProxy: this.apiProxy, api: this.api, fleet: this.fleet, log: this.log, anomaly });
    this.submitter = new DeploymentSubmitter({
      cfg, random: this.random, runId: this.runId, execDir: this.execDir, agents: this.fleet.agents, api: this.api, apiProxy: this.apiProxy,
    });
  }

  async run(): Promise<RunData> {
    const { cfg } = this;
    mkdirSync(this.execDir, { recursive: true });
    this.log(`configuration ${cfg.name}: ${JSON.stringify(cfg)}; work dir ${this.work}`);
    try {
      for (const [k, v] of Object.entries({ OUTPOST_TEST_HOOKS: "1", OUTPOST_OFFLINE_AFTER_MS: String(cfg.offlineAfterMs) })) {
        this.#savedEnv[k] = process.env[k];
        process.env[k] = v; // TestServer passes its process env to scripts/server.ts
      }
      await this.server.start();
      await this.proxy.start();
      await this.apiProxy.start();
      this.log(`server ${this.server.base}; agent proxy ${this.proxy.url}; API proxy ${this.apiProxy.url}`);
      await this.fleet.start(cfg.agents, this.runId, this.proxy.url);

      const startedAt = Date.now();
      const schedule = buildSchedule(cfg, this.random);
      this.log(`fault schedule: ${schedule.length} faults over ${cfg.faultSeconds} s`);
      const submitting = this.submitter.submitAll(startedAt);
      await this.injector.injectAll(schedule, startedAt, cfg.faultSeconds);
      const faultPhaseEndedAt = Date.now();
      this.log("fault phase over: healing");
      await this.injector.heal();
      const healedAt = Date.now();
      await submitting;
      const { agents } = this.fleet;
      const { submissions } = this.submitter;
      this.log(`all ${submissions.length} deployments submitted; settling (at most ${cfg.settleSeconds} s)`);
      const { settledAt, views, channels } = await settle({ api: this.api, submissions, agents, settleSeconds: cfg.settleSeconds, log: this.log }, healedAt);
      this.log(settledAt ? `settled ${((settledAt - healedAt) / 1000).toFixed(1)} s after the heal` : "did NOT settle in time");

      const logs = await readLogs(this.api, views);
      await this.fleet.stopAll();
      const journals = await readJournals(agents);
      const executions = readExecutions(this.execDir);
      await this.server.stop();
      const d1Deployments = await countD1Deployments(this.server.stateDir, this.runId);
      return {
        cfg, runId: this.runId, work: this.work, execDir: this.execDir, agents, submissions,
        faults: this.injector.tally, proxyStats: this.proxy.stats, apiProxyStats: this.apiProxy.stats, anomalies: this.anomalies,
        startedAt, faultPhaseEndedAt, lastFaultAt: this.injector.lastFaultAt, healedAt, settledAt, settleWaitedMs: Date.now() - healedAt,
        views, logs, channels, journals, executions, d1Deployments, endedAt: Date.now(),
      };
    } finally {
      await this.cleanup();
    }
  }

  // Stops everything this run started: agents, step process groups, server, proxies.
  async cleanup(): Promise<void> {
    this.injector.stop();
    await this.fleet.killAll();
    // Cleanup goes on past a failing step, but says what failed.
    const attempt = (what: string, p: Promise<unknown>) => p.catch((e) => this.log(`cleanup: ${what} failed: ${e instanceof Error ? e.message : e}`));
    await attempt("stopping the server", this.server.stop("SIGKILL"));
    await attempt("closing the agent proxy", this.proxy.close());
    await attempt("closing the API proxy", this.apiProxy.close());
    for (const [k, v] of Object.entries(this.#savedEnv)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    this.#savedEnv = {};
  }

  #anomaly(what: string): void {
    this.anomalies.push({ at: Date.now(), what });
    this.log(`ANOMALY: ${what}`);
  }
}
