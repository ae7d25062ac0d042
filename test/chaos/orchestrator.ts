// The chaos run: a real server (wrangler dev) with test hooks, agents behind a
// fault proxy, many deployments submitted (Idempotency-Key, retried), faults
// injected on a random schedule, then heal, settle, and collect what the checks need.
// The parts: agent-fleet.ts (agent processes), plan.ts + submissions.ts (deployments
// and what must come of each), fault-injector.ts (faults and heal), agent-lost.ts (an
// agent stopped past a deployment's deadline), observer.ts (results sampled while the
// run goes on), collect.ts (settle and final collection).
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestServer } from "../support/local-server.ts";
import { AgentFleet, type AgentState } from "./agent-fleet.ts";
import { ApiClient, type Http } from "./api-client.ts";
import { AgentLostScenarios, type AgentLostRun } from "./agent-lost.ts";
import { readD1, readExecutions, readJournals, readLogs, settle, type D1Deployments, type JournalState, type LogRead } from "./collect.ts";
import { rngFrom, type ChaosConfig } from "./config.ts";
import { FaultInjector, type FaultTally } from "./fault-injector.ts";
import { FaultProxy } from "./fault-proxy.ts";
import { ResultObserver, type DeploymentHistory, type StepHistory } from "./observer.ts";
import { CHAOS_PLUGIN, CHAOS_SECRET } from "./plan.ts";
import { buildAgentPackage, readSigningKey } from "../../scripts/agent-package.ts";
import { RELEASE_KEY_FILE } from "../../scripts/local-state.ts";
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
  logs: Map<string, LogRead>; // step id → its whole log, read by ranges
  channels: Map<string, Http>; // agent name → GET /api/v1/agents/:id answer
  journals: Map<string, JournalState | { error: string }>;
  executions: Map<string, number>; // step id → times it ran (from the count files)
  d1Deployments: D1Deployments; // this run's deployments and steps as D1 holds them at the end
  stepHistory: Map<string, StepHistory>; // step id → distinct terminal results seen (observer.ts)
  deploymentHistory: Map<string, DeploymentHistory>;
  observerReads: number;
  agentLost: AgentLostRun[];
  stepStartKills: FaultInjector["stepStartKills"];
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
  readonly observer = new ResultObserver();
  readonly agentLost: AgentLostScenarios;
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
      onCreated: (id) => this.observer.watch(id),
    });
    this.agentLost = new AgentLostScenarios({
      cfg, fleet: this.fleet, injector: this.injector, submitter: this.submitter, api: this.api, observer: this.observer, execDir: this.execDir, log: this.log,
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
      await this.#publishPlugin();
      this.injector.upgradeVersions = await this.#publishAgentVersions();
      await this.proxy.start();
      await this.apiProxy.start();
      this.log(`server ${this.server.base}; agent proxy ${this.proxy.url}; API proxy ${this.apiProxy.url}`);
      await this.fleet.start(cfg.agents, this.runId, this.proxy.url);

      this.submitter.makePlans();
      const plans = this.submitter.plans;
      this.log(
        `plans: ${plans.length} deployments, ${plans.reduce((n, p) => n + p.steps.length * p.agents.length, 0)} steps ` +
          `(${plans.filter((p) => p.expect === "timeout").length} with a step timeout, ${plans.reduce((n, p) => n + p.steps.filter((s) => s.kind === "big").length * p.agents.length, 0)} big logs, ` +
          `${plans.reduce((n, p) => n + p.steps.filter((s) => s.kind === "plugin").length * p.agents.length, 0)} plug-in steps); ` +
          `${this.submitter.lostPlans.length} agent-lost scenario(s)`,
      );
      const startedAt = Date.now();
      const schedule = buildSchedule(cfg, this.random);
      this.log(`fault schedule: ${schedule.length} faults over ${cfg.faultSeconds} s`);
      this.observer.start(this.api);
      const submitting = this.submitter.submitAll(startedAt);
      const scenarios = this.agentLost.runAll(startedAt);
      await this.injector.injectAll(schedule, startedAt, cfg.faultSeconds);
      await scenarios; // they end within the phase; an agent they stopped runs again
      const faultPhaseEndedAt = Date.now();
      this.log("fault phase over: healing");
      await this.injector.heal();
      const healedAt = Date.now();
      await submitting;
      const { agents } = this.fleet;
      const { submissions } = this.submitter;
      this.log(`all ${submissions.length} deployments submitted; settling (at most ${cfg.settleSeconds} s)`);
      const settleOpts = { api: this.api, submissions, agents, settleSeconds: cfg.settleSeconds, log: this.log, observer: this.observer };
      const { settledAt, channels } = await settle(settleOpts, healedAt);
      this.log(settledAt ? `settled ${((settledAt - healedAt) / 1000).toFixed(1)} s after the heal` : "did NOT settle in time");

      // the final read of every deployment: the end of each result's history through the API
      const views = await this.#readAllViews(submissions);
      await this.observer.stop();
      const logs = await readLogs(this.api, views, cfg.logRangeKiB * 1024);
      await this.fleet.stopAll();
      const journals = await readJournals(agents);
      const executions = readExecutions(this.execDir);
      await this.server.stop();
      const d1Deployments = await readD1(this.server.stateDir, this.runId);
      // …and as D1 holds it
      if (!("error" in d1Deployments)) {
        const at = Date.now();
        for (const [id, s] of d1Deployments.steps) {
          if (!["pending", "running"].includes(s.status)) this.observer.recordStep(id, s, { status: s.status, exitCode: s.exitCode, reason: s.reason, finishedAt: s.finishedAt, reportedAt: s.reportedAt }, "D1", at);
        }
        for (const [id, dep] of d1Deployments.deployments) {
          if (["succeeded", "failed", "canceled"].includes(dep.status)) this.observer.recordDeployment(id, { status: dep.status, finishedAt: dep.finishedAt }, "D1", at);
        }
      }
      return {
        cfg, runId: this.runId, work: this.work, execDir: this.execDir, agents, submissions,
        faults: this.injector.tally, proxyStats: this.proxy.stats, apiProxyStats: this.apiProxy.stats, anomalies: this.anomalies,
        startedAt, faultPhaseEndedAt, lastFaultAt: this.injector.lastFaultAt, healedAt, settledAt, settleWaitedMs: Date.now() - healedAt,
        views, logs, channels, journals, executions, d1Deployments,
        stepHistory: this.observer.steps, deploymentHistory: this.observer.deployments, observerReads: this.observer.reads, agentLost: this.agentLost.runs,
        stepStartKills: this.injector.stepStartKills, endedAt: Date.now(),
      };
    } finally {
      await this.cleanup();
    }
  }

  // The plug-in the plans' "plugin" steps run, packed with plain tar, and their secret.
  async #publishPlugin(): Promise<void> {
    const dir = join(this.work, "chaos-plugin");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "outpost-plugin.json"), JSON.stringify(CHAOS_PLUGIN.manifest));
    for (const [name, text] of Object.entries(CHAOS_PLUGIN.files)) writeFileSync(join(dir, name), text);
    const pkg = join(this.work, "chaos-plugin.tgz");
    execFileSync("tar", ["czf", pkg, "-C", dir, "."]);
    const up = await fetch(`${this.server.base}/api/v1/plugins`, { method: "POST", body: new Uint8Array(readFileSync(pkg)), headers: { authorization: `Bearer ${this.server.adminToken}` } });
    if (up.status !== 201) throw new Error(`uploading the chaos plug-in: ${up.status} ${await up.text()}`);
    const secret = await this.server.api("POST", "/api/v1/secrets", CHAOS_SECRET);
    if (secret.status !== 201) throw new Error(`creating the chaos secret: ${secret.status} ${secret.text}`);
  }

  // Two packages of this checkout, signed with the server's release key (the agents pin
  // it when they register): the agent-upgrade fault moves agents between them.
  async #publishAgentVersions(): Promise<string[]> {
    const key = await readSigningKey(join(this.server.stateDir, RELEASE_KEY_FILE));
    const versions = [`0.0.1-chaos.${this.runId}.a`, `0.0.1-chaos.${this.runId}.b`].map((v) => v.replace(/[^0-9A-Za-z.-]/g, ""));
    for (const version of versions) {
      const pkg = await buildAgentPackage({ version, key });
      const up = await fetch(`${this.server.base}/api/v1/agent-versions`, { method: "POST", body: new Uint8Array(pkg.bytes), headers: { authorization: `Bearer ${this.server.adminToken}` } });
      if (up.status !== 201) throw new Error(`uploading agent version ${version}: ${up.status} ${await up.text()}`);
    }
    return versions;
  }

  async #readAllViews(submissions: readonly Submission[]): Promise<Map<string, any>> {
    const ids = [...new Set(submissions.flatMap((s) => [s.id, s.replayed?.id]).filter((id): id is string => !!id))];
    const views = new Map<string, any>();
    let i = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (i < ids.length) {
        const id = ids[i++];
        const r = await this.api.get(`/api/v1/deployments/${id}`, 30_000).catch(() => null);
        if (r?.status !== 200) continue;
        views.set(id, r.json);
        this.observer.recordView(r.json, "final API");
      }
    }));
    return views;
  }

  // Stops everything this run started: agents, step process groups, server, proxies.
  async cleanup(): Promise<void> {
    this.injector.stop();
    await this.observer.stop();
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
