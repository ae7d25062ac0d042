// The chaos run: a real server (wrangler dev) with test hooks, agents behind a
// fault proxy, many deployments submitted (Idempotency-Key, retried), faults
// injected on a random schedule, then heal, settle, and collect what the checks need.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestServer, sleep, type Proc } from "../support/local-server.ts";
import { rngFrom, type ChaosConfig } from "./config.ts";
import { FaultProxy } from "./fault-proxy.ts";
import { buildSchedule, FAULT_KINDS, type FaultKindName, type ScheduledFault } from "./schedule.ts";

export type Http = { status: number; json: any; text: string };
export type AgentState = { name: string; id: string; home: string; proc: Proc | null; down: boolean; restartTimer: NodeJS.Timeout | null; starts: number };
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
export type FaultTally = Record<FaultKindName, { injected: number; notInjected: number; reasons: string[] }>;
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
  d1Deployments: { source: string; byName: Map<string, number> } | { error: string };
  endedAt: number;
};

export type JournalState = { outbox: number; commands: { seq: number; id: string; state: string }[]; lastSeq: number; runningSteps: string[] };

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

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
  readonly agents: AgentState[] = [];
  readonly submissions: Submission[] = [];
  readonly anomalies: Anomaly[] = [];
  readonly faults = Object.fromEntries(FAULT_KINDS.map((k) => [k, { injected: 0, notInjected: 0, reasons: [] as string[] }])) as FaultTally;
  #t0 = Date.now();
  #stopFaults = false;
  #timers = new Set<NodeJS.Timeout>();
  #serverBusy: Promise<void> | null = null;
  #savedEnv: Record<string, string | undefined> = {};
  lastFaultAt = 0;

  constructor(cfg: ChaosConfig, log: (msg: string) => void = (m) => process.stderr.write(m + "\n")) {
    this.cfg = cfg;
    this.random = rngFrom(cfg.seed);
    this.log = (m) => log(`[chaos +${((Date.now() - this.#t0) / 1000).toFixed(1)}s] ${m}`);
  }

  // ---- HTTP ----

  async http(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}, timeoutMs = 10_000): Promise<Http> {
    const r = await fetch(base + path, {
      method,
      headers: { authorization: `Bearer ${this.server.adminToken}`, ...(body === undefined ? {} : { "content-type": "application/json" }), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await r.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: r.status, json, text };
  }

  // A read straight to the server, retried through restarts (network errors, 5xx) until `ms`.
  async get(path: string, ms = 60_000): Promise<Http> {
    const t0 = Date.now();
    for (;;) {
      try {
        const r = await this.http(this.server.base, "GET", path);
        if (r.status < 500) return r;
        if (Date.now() - t0 > ms) return r;
      } catch (e) {
        if (Date.now() - t0 > ms) throw e;
      }
      await sleep(500);
    }
  }

  // ---- the run ----

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
      await this.#startAgents();

      const startedAt = Date.now();
      const schedule = buildSchedule(cfg, this.random);
      this.log(`fault schedule: ${schedule.length} faults over ${cfg.faultSeconds} s`);
      const submitting = this.#submitAll(startedAt);
      await this.#injectAll(schedule, startedAt);
      const faultPhaseEndedAt = Date.now();
      this.log("fault phase over: healing");
      await this.#healAll();
      const healedAt = Date.now();
      await submitting;
      this.log(`all ${this.submissions.length} deployments submitted; settling (at most ${cfg.settleSeconds} s)`);
      const { settledAt, views, channels } = await this.#settle(healedAt);
      this.log(settledAt ? `settled ${((settledAt - healedAt) / 1000).toFixed(1)} s after the heal` : "did NOT settle in time");

      const logs = await this.#readLogs(views);
      // the agents' end state: stop them, then read their journals
      for (const a of this.agents) {
        a.down = true; // stopped on purpose: not an anomaly
        await a.proc?.stop();
      }
      const journals = new Map<string, JournalState | { error: string }>();
      for (const a of this.agents) journals.set(a.name, await readJournal(join(a.home, "journal.db")).catch((e) => ({ error: String(e?.message ?? e) })));
      const executions = this.#readExecutions();
      await this.server.stop();
      const d1Deployments = await this.#countD1Deployments();
      return {
        cfg, runId: this.runId, work: this.work, execDir: this.execDir, agents: this.agents, submissions: this.submissions,
        faults: this.faults, proxyStats: this.proxy.stats, apiProxyStats: this.apiProxy.stats, anomalies: this.anomalies,
        startedAt, faultPhaseEndedAt, lastFaultAt: this.lastFaultAt, healedAt, settledAt, settleWaitedMs: Date.now() - healedAt,
        views, logs, channels, journals, executions, d1Deployments, endedAt: Date.now(),
      };
    } finally {
      await this.cleanup();
    }
  }

  // Stops everything this run started: agents, step process groups, server, proxies.
  async cleanup(): Promise<void> {
    this.#stopFaults = true;
    for (const t of this.#timers) clearTimeout(t);
    for (const a of this.agents) {
      if (a.restartTimer) clearTimeout(a.restartTimer);
      await a.proc?.stop("SIGKILL").catch(() => {});
      killStepGroups(a.home);
    }
    await this.server.stop("SIGKILL").catch(() => {});
    await this.proxy.close().catch(() => {});
    await this.apiProxy.close().catch(() => {});
    for (const [k, v] of Object.entries(this.#savedEnv)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    this.#savedEnv = {};
  }

  async #startAgents(): Promise<void> {
    for (let i = 0; i < this.cfg.agents; i++) {
      const name = `chaos-${this.runId}-a${i + 1}`;
      const home = await this.server.registerAgent(name, this.proxy.url);
      const settings = JSON.parse(readFileSync(join(home, "settings.json"), "utf8"));
      this.agents.push({ name, id: settings.agentId, home, proc: null, down: false, restartTimer: null, starts: 0 });
    }
    for (const a of this.agents) this.#launchAgent(a);
    for (const a of this.agents) {
      // presence needs the WebSocket; work goes on without it (long-poll), so a miss is reported, not fatal
      await this.server.waitAgentOnline(a.name, 30_000).catch((e) => this.#anomaly(`agent ${a.name} not online 30 s after start: ${e.message}`));
    }
    this.log(`${this.agents.length} agents started: ${this.agents.map((a) => a.name).join(", ")}`);
  }

  #launchAgent(a: AgentState): void {
    a.proc = this.server.startAgent(a.name, a.home);
    a.down = false;
    a.starts++;
    const proc = a.proc;
    void proc.exited.then((code) => {
      if (a.proc === proc && !a.down && !this.#stopFaults) this.#anomaly(`agent ${a.name} monitor (pid ${proc.pid}) exited by itself with ${code}`);
    });
  }

  #anomaly(what: string): void {
    this.anomalies.push({ at: Date.now(), what });
    this.log(`ANOMALY: ${what}`);
  }

  // ---- deployments ----

  async #submitAll(startedAt: number): Promise<void> {
    const { cfg } = this;
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
    const { cfg, random } = this;
    const first = Math.floor(random() * this.agents.length);
    const targets = [this.agents[first].name];
    if (this.agents.length > 1 && random() < cfg.multiAgentShare) targets.push(this.agents[(first + 1 + Math.floor(random() * (this.agents.length - 1))) % this.agents.length].name);
    const steps = cfg.stepsMin + Math.floor(random() * (cfg.stepsMax - cfg.stepsMin + 1));
    // one count file per agent; deployments on two agents share a file (appends of one short line are atomic)
    const file = join(this.execDir, targets.length === 1 ? `executions-${targets[0]}.txt` : "executions-shared.txt");
    return {
      name: `chaos-${this.runId}-d${i}`,
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
          const r = await this.http(this.apiProxy.url, "POST", "/api/v1/deployments", body, { "idempotency-key": sub.key }, 15_000);
          if ((r.status === 200 || r.status === 201) && typeof r.json?.id === "string") return { id: r.json.id, status: r.status, error: null };
          last = `${r.status} ${r.text.slice(0, 200)}`;
          if (r.status < 500 && r.status !== 429) return { id: null, status: r.status, error: last };
        } catch (e: any) {
          last = String(e?.cause?.code ?? e?.name ?? e);
        }
        await sleep(300 + this.random() * 1_500);
      }
      return { id: null, status: null, error: `gave up after 180 s: ${last}` };
    };
    const first = await post();
    sub.id = first.id;
    sub.error = first.error;
    if (sub.id && this.random() < this.cfg.replayShare) sub.replayed = await post(); // a client repeating a request that had succeeded
  }

  // ---- faults ----

  async #injectAll(schedule: ScheduledFault[], startedAt: number): Promise<void> {
    for (const f of schedule) {
      const due = startedAt + f.at;
      if (Date.now() < due) await sleep(due - Date.now());
      if (this.#stopFaults) return;
      let outcome: string | true = "";
      for (let attempt = 0; attempt < 8; attempt++) {
        try {
          outcome = await this.#inject(f);
        } catch (e: any) {
          outcome = `error: ${e?.message ?? e}`;
        }
        if (outcome === true || outcome.startsWith("unsupported")) break;
        await sleep(1_000);
      }
      const t = this.faults[f.kind];
      if (outcome === true) {
        t.injected++;
        this.lastFaultAt = Date.now();
      } else {
        t.notInjected++;
        if (t.reasons.length < 5) t.reasons.push(outcome);
        this.log(`fault ${f.kind} NOT injected: ${outcome}`);
      }
    }
    const end = startedAt + this.cfg.faultSeconds * 1000;
    if (Date.now() < end) await sleep(end - Date.now());
  }

  #later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.#timers.delete(t);
      fn();
    }, ms);
    this.#timers.add(t);
  }

  // Returns true when injected, else why not.
  async #inject(f: ScheduledFault): Promise<true | string> {
    const agent = this.agents[f.agent];
    const note = (what: string) => this.log(`fault ${f.kind}: ${what}`);
    switch (f.kind) {
      // a fault that hit no connection does not count: it is tried again a little later
      case "proxy-cut-all": {
        if (this.proxy.openConnections === 0) return "no open agent connection";
        note(`${this.proxy.cutAll()} connection(s) reset`);
        return true;
      }
      case "proxy-cut-share": {
        const open = this.proxy.openConnections;
        if (open === 0) return "no open agent connection";
        const n = this.proxy.cutShare(f.share);
        if (n === 0) return "the random share hit no connection";
        note(`${n} of ${open} connection(s) reset (share ${f.share.toFixed(2)})`);
        return true;
      }
      case "proxy-stall": {
        if (this.proxy.openConnections === 0) return "no open agent connection";
        note(`${this.proxy.stall(f.ms)} connection(s) stalled for ${f.ms} ms`);
        return true;
      }
      case "proxy-half-open": {
        if (this.proxy.openConnections === 0) return "no open agent connection";
        const n = this.proxy.halfOpen(Math.max(f.share, 1 / this.proxy.openConnections));
        if (n === 0) return "the random share hit no connection";
        this.#later(f.ms, () => this.proxy.cutHalfOpen());
        note(`${n} connection(s) half-open for ${f.ms} ms, then cut`);
        return true;
      }
      case "proxy-blackhole":
        this.proxy.blackhole(f.ms);
        note(`new connections refused for ${f.ms} ms`);
        return true;
      case "proxy-ws-block":
        note(`WebSocket upgrades blocked for ${f.ms} ms (${this.proxy.blockWebSockets(f.ms)} open WebSocket(s) reset)`);
        return true;
      case "api-cut": {
        if (this.apiProxy.openConnections === 0) return "no open management API connection";
        note(`${this.apiProxy.cutAll()} management API connection(s) reset`);
        return true;
      }
      case "worker-kill": {
        if (agent.down) return `agent ${agent.name} is down`;
        const pid = readPid(join(agent.home, "worker.pid"));
        if (!pid || !alive(pid)) return `no live worker for ${agent.name}`;
        process.kill(pid, "SIGKILL");
        note(`kill -9 worker ${pid} of ${agent.name}`);
        return true;
      }
      case "monitor-kill": {
        if (agent.down || !agent.proc) return `agent ${agent.name} is already down`;
        const monitor = readPid(join(agent.home, "monitor.pid"));
        const worker = readPid(join(agent.home, "worker.pid"));
        agent.down = true;
        for (const pid of [monitor, worker]) if (pid && alive(pid)) process.kill(pid, "SIGKILL");
        try {
          process.kill(-agent.proc.pid, "SIGKILL"); // whatever else ran in the launcher's group (not the steps: own groups)
        } catch { /* gone */ }
        note(`kill -9 monitor ${monitor} and worker ${worker} of ${agent.name}; run again in ${f.ms} ms`);
        agent.restartTimer = setTimeout(() => {
          agent.restartTimer = null;
          if (!this.#stopFaults && agent.down) this.#launchAgent(agent);
        }, f.ms);
        return true;
      }
      case "server-kill": {
        if (this.#serverBusy) await this.#serverBusy;
        const t0 = Date.now();
        this.#serverBusy = (async () => {
          await this.server.stop("SIGKILL");
          await sleep(f.ms);
          await this.server.start();
        })();
        try {
          await this.#serverBusy;
        } finally {
          this.#serverBusy = null;
        }
        note(`kill -9 of the server, down ${f.ms} ms, back after ${Date.now() - t0} ms`);
        return true;
      }
      case "do-evict": {
        const r = await this.http(this.server.base, "POST", `/api/v1/test-hooks/agents/${agent.id}/evict`, {});
        if (r.status === 404 || r.status === 405) return `unsupported: POST /api/v1/test-hooks/agents/:id/evict answered ${r.status} ${r.text.slice(0, 120)}`;
        if (r.status >= 300) return `evict answered ${r.status} ${r.text.slice(0, 200)}`;
        note(`Durable Object of ${agent.name} evicted`);
        return true;
      }
    }
  }

  async #healAll(): Promise<void> {
    this.#stopFaults = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    this.proxy.heal();
    this.apiProxy.heal();
    if (this.#serverBusy) await this.#serverBusy.catch(() => {});
    if (!this.server.proc || this.server.proc.child.exitCode !== null || this.server.proc.child.signalCode !== null) {
      this.#anomaly("server not running at heal time; starting it");
      await this.server.start();
    }
    for (const a of this.agents) {
      if (a.restartTimer) clearTimeout(a.restartTimer);
      a.restartTimer = null;
      const exited = !a.proc || a.proc.child.exitCode !== null || a.proc.child.signalCode !== null;
      if (a.down || exited) this.#launchAgent(a);
    }
    this.#stopFaults = false; // from here an agent exiting by itself is an anomaly again
  }

  // ---- settle ----

  async #settle(healedAt: number): Promise<{ settledAt: number | null; views: Map<string, any>; channels: Map<string, Http> }> {
    const views = new Map<string, any>();
    const channels = new Map<string, Http>();
    const ids = this.submissions.flatMap((s) => (s.id ? [s.id] : [])).concat(this.submissions.flatMap((s) => (s.replayed?.id && s.replayed.id !== s.id ? [s.replayed.id] : [])));
    const deadline = healedAt + this.cfg.settleSeconds * 1000;
    let lastNote = 0;
    for (;;) {
      const open = ids.filter((id) => !TERMINAL.has(views.get(id)?.status));
      await pool(open, 8, async (id) => {
        const r = await this.get(`/api/v1/deployments/${id}`, 10_000).catch(() => null);
        if (r?.status === 200) views.set(id, r.json);
      });
      for (const a of this.agents) {
        const r = await this.get(`/api/v1/agents/${a.id}`, 10_000).catch((e) => ({ status: 0, json: undefined, text: String(e) }));
        channels.set(a.name, r);
      }
      const stillOpen = ids.filter((id) => !TERMINAL.has(views.get(id)?.status));
      const channelOk = [...channels.values()].every((r) => r.status !== 200 || !r.json?.channel || channelSynced(r.json.channel));
      if (stillOpen.length === 0 && channelOk) return { settledAt: Date.now(), views, channels };
      if (Date.now() > deadline) return { settledAt: null, views, channels };
      if (Date.now() - lastNote > 10_000) {
        lastNote = Date.now();
        this.log(`settling: ${stillOpen.length} deployment(s) not ended; channels ${[...channels.entries()].map(([n, r]) => `${n}=${r.status === 200 ? JSON.stringify(r.json?.channel) : r.status}`).join(" ")}`);
      }
      await sleep(1_000);
    }
  }

  async #readLogs(views: Map<string, any>): Promise<Map<string, string | null>> {
    const logs = new Map<string, string | null>();
    const steps = [...views.values()].flatMap((v) => (v.steps ?? []).map((s: any) => ({ dep: v.id, id: s.id })));
    await pool(steps, 8, async (s) => {
      const r = await this.get(`/api/v1/deployments/${s.dep}/steps/${s.id}/log`, 10_000).catch(() => null);
      logs.set(s.id, r?.status === 200 ? r.text : null);
    });
    return logs;
  }

  #readExecutions(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const f of readdirSync(this.execDir)) {
      for (const line of readFileSync(join(this.execDir, f), "utf8").split("\n")) {
        const id = line.trim();
        if (id) counts.set(id, (counts.get(id) ?? 0) + 1);
      }
    }
    return counts;
  }

  // Deployments in D1 by name, read from the local D1 file once the server is stopped.
  async #countD1Deployments(): Promise<RunData["d1Deployments"]> {
    const dir = join(this.server.stateDir, "wrangler", "v3", "d1");
    const files = existsSync(dir) ? findFiles(dir, (f) => f.endsWith(".sqlite")) : [];
    const { createClient } = await import("@libsql/client");
    for (const file of files) {
      const c = createClient({ url: "file:" + file });
      try {
        await c.execute("PRAGMA query_only = ON");
        const rs = await c.execute({ sql: "SELECT name, COUNT(*) AS n FROM deployments WHERE name LIKE ? GROUP BY name", args: [`chaos-${this.runId}-%`] });
        return { source: file, byName: new Map(rs.rows.map((r) => [String(r.name), Number(r.n)])) };
      } catch {
        /* not the D1 database */
      } finally {
        c.close();
      }
    }
    return { error: `no D1 database with a deployments table under ${dir}` };
  }
}

export function channelSynced(ch: any): boolean {
  return !!ch && ch.acked === ch.head && ch.openCommands === 0 && ch.pendingProjections === 0;
}

export async function readJournal(path: string): Promise<JournalState> {
  const { createClient } = await import("@libsql/client");
  const c = createClient({ url: "file:" + path });
  try {
    await c.execute("PRAGMA query_only = ON"); // read-only: this is the agent's store
    const outbox = Number((await c.execute("SELECT COUNT(*) AS n FROM outbox")).rows[0].n);
    const commands = (await c.execute("SELECT seq, id, state FROM commands ORDER BY seq")).rows.map((r) => ({ seq: Number(r.seq), id: String(r.id), state: String(r.state) }));
    const meta = (await c.execute("SELECT value FROM meta WHERE key = 'lastSeq'")).rows[0];
    const running = (await c.execute("SELECT step_id FROM steps WHERE state IN ('pending', 'running')")).rows.map((r) => String(r.step_id));
    return { outbox, commands, lastSeq: meta ? Number(meta.value) : 0, runningSteps: running };
  } finally {
    c.close();
  }
}

export function killStepGroups(home: string): void {
  const steps = join(home, "steps");
  if (!existsSync(steps)) return;
  for (const d of readdirSync(steps)) {
    const pid = readPid(join(steps, d, "pid"));
    if (pid && pid > 1) {
      try {
        process.kill(-pid, "SIGKILL");
      } catch { /* ended */ }
    }
  }
}

function readPid(file: string): number | null {
  try {
    const n = Number.parseInt(readFileSync(file, "utf8").trim(), 10);
    return Number.isInteger(n) && n > 1 ? n : null;
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function findFiles(dir: string, pred: (f: string) => boolean): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...findFiles(p, pred));
    else if (pred(e.name)) out.push(p);
  }
  return out;
}

async function pool<T>(items: T[], n: number, fn: (t: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (i < items.length) await fn(items[i++]);
  }));
}
