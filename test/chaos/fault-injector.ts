// Injects the scheduled faults (schedule.ts) into the running system, counts what was
// injected and what could not be, and heals everything at the end of the fault phase.
import { existsSync, readdirSync, watch, type FSWatcher } from "node:fs";
import { join } from "node:path";
import { sleep, type TestServer } from "../support/local-server.ts";
import type { AgentFleet } from "./agent-fleet.ts";
import { isRunning as alive, readPid } from "../support/pids.ts";
import type { ApiClient } from "./api-client.ts";
import type { FaultProxy } from "./fault-proxy.ts";
import { FAULT_KINDS, type FaultKindName, type ScheduledFault } from "./schedule.ts";

const API_CUT_WAIT_MS = 20_000;

export type FaultTally = Record<FaultKindName, { injected: number; notInjected: number; reasons: string[] }>;

export class FaultInjector {
  readonly tally = Object.fromEntries(FAULT_KINDS.map((k) => [k, { injected: 0, notInjected: 0, reasons: [] as string[] }])) as FaultTally;
  lastFaultAt = 0;
  readonly stepStartKills: { agent: string; stepId: string; delayMs: number }[] = []; // worker-kill-at-step-start: whose step
  readonly #server: TestServer;
  readonly #proxy: FaultProxy;
  readonly #apiProxy: FaultProxy;
  readonly #api: ApiClient;
  readonly #fleet: AgentFleet;
  readonly #log: (msg: string) => void;
  readonly #anomaly: (what: string) => void;
  readonly #random: () => number;
  #stopped = false;
  #timers = new Set<NodeJS.Timeout>();
  #serverBusy: Promise<void> | null = null;
  // Held by a scenario (agent-lost.ts): agent faults go to another agent, server kills wait.
  readonly #heldAgents = new Set<string>();
  #serverHolds = 0;
  // Two packaged versions of this checkout (orchestrator.ts): an upgrade fault moves an
  // agent to the one it does not run.
  upgradeVersions: string[] = [];

  constructor(opts: {
    server: TestServer;
    proxy: FaultProxy;
    apiProxy: FaultProxy;
    api: ApiClient;
    fleet: AgentFleet;
    log: (msg: string) => void;
    anomaly: (what: string) => void;
    random?: () => number;
  }) {
    this.#random = opts.random ?? Math.random;
    this.#server = opts.server;
    this.#proxy = opts.proxy;
    this.#apiProxy = opts.apiProxy;
    this.#api = opts.api;
    this.#fleet = opts.fleet;
    this.#log = opts.log;
    this.#anomaly = opts.anomaly;
  }

  // True during the heal and after cleanup: no fault fires, agents stopping is expected.
  get stopped(): boolean {
    return this.#stopped;
  }

  async injectAll(schedule: ScheduledFault[], startedAt: number, faultSeconds: number): Promise<void> {
    for (const f of schedule) {
      const due = startedAt + f.at;
      if (Date.now() < due) await sleep(due - Date.now());
      if (this.#stopped) return;
      let outcome: string | true = "";
      // Tried for up to 20 s: longer than a blackhole (≤ 10 s) plus the agents' reconnect
      // after it, so a fault that needs an open connection is not lost to a collision.
      for (let attempt = 0; attempt < 20; attempt++) {
        try {
          outcome = await this.#inject(f);
        } catch (e: any) {
          outcome = `error: ${e?.message ?? e}`;
        }
        if (outcome === true || outcome.startsWith("unsupported")) break;
        await sleep(1_000);
      }
      const t = this.tally[f.kind];
      if (outcome === true) {
        t.injected++;
        this.lastFaultAt = Date.now();
      } else {
        t.notInjected++;
        if (t.reasons.length < 5) t.reasons.push(outcome);
        this.#log(`fault ${f.kind} NOT injected: ${outcome}`);
      }
    }
    const end = startedAt + faultSeconds * 1000;
    if (Date.now() < end) await sleep(end - Date.now());
  }

  async heal(): Promise<void> {
    this.#stopped = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    this.#proxy.heal();
    this.#apiProxy.heal();
    // A server kill/restart still in flight must finish first; if it failed, the check below restarts the server.
    if (this.#serverBusy) await this.#serverBusy.catch((e) => this.#log(`server restart in flight failed (heal restarts it): ${e instanceof Error ? e.message : e}`));
    const server = this.#server;
    if (!server.proc || server.proc.child.exitCode !== null || server.proc.child.signalCode !== null) {
      this.#anomaly("server not running at heal time; starting it");
      await server.start();
    }
    this.#fleet.relaunchStopped();
    this.#stopped = false; // from here an agent exiting by itself is an anomaly again
  }

  // Agent faults (worker-kill, monitor-kill) leave this agent alone until released: they
  // hit another agent instead.
  holdAgent(name: string): void {
    this.#heldAgents.add(name);
  }

  releaseAgent(name: string): void {
    this.#heldAgents.delete(name);
  }

  // No server kill starts until the returned function is called (one in flight finishes
  // first): a restart would move agent-lost deadlines back (docs/protocol.md §Agent lost).
  async holdServer(): Promise<() => void> {
    this.#serverHolds++;
    let released = false;
    const release = () => {
      if (!released) this.#serverHolds--;
      released = true;
    };
    if (this.#serverBusy) await this.#serverBusy.catch(() => {});
    return release;
  }

  // The fault's agent, or the next one not held by a scenario.
  #agentFor(f: ScheduledFault) {
    const agents = this.#fleet.agents;
    for (let i = 0; i < agents.length; i++) {
      const a = agents[(f.agent + i) % agents.length];
      if (!this.#heldAgents.has(a.name)) return a;
    }
    return null;
  }

  // For cleanup: nothing fires any more; the caller then kills agents, server and proxies.
  stop(): void {
    this.#stopped = true;
    for (const t of this.#timers) clearTimeout(t);
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
    const agent = this.#agentFor(f) ?? this.#fleet.agents[f.agent];
    const held = this.#heldAgents.has(agent.name);
    const proxy = this.#proxy;
    const note = (what: string) => this.#log(`fault ${f.kind}: ${what}`);
    switch (f.kind) {
      // a fault that hit no connection does not count: it is tried again a little later
      case "proxy-cut-all": {
        if (proxy.openConnections === 0) return "no open agent connection";
        note(`${proxy.cutAll()} connection(s) reset`);
        return true;
      }
      case "proxy-cut-share": {
        const open = proxy.openConnections;
        if (open === 0) return "no open agent connection";
        const n = proxy.cutShare(f.share);
        if (n === 0) return "the random share hit no connection";
        note(`${n} of ${open} connection(s) reset (share ${f.share.toFixed(2)})`);
        return true;
      }
      case "proxy-stall": {
        if (proxy.openConnections === 0) return "no open agent connection";
        note(`${proxy.stall(f.ms)} connection(s) stalled for ${f.ms} ms`);
        return true;
      }
      case "proxy-half-open": {
        if (proxy.openConnections === 0) return "no open agent connection";
        const n = proxy.halfOpen(Math.max(f.share, 1 / proxy.openConnections));
        if (n === 0) return "the random share hit no connection";
        this.#later(f.ms, () => proxy.cutHalfOpen());
        note(`${n} connection(s) half-open for ${f.ms} ms, then cut`);
        return true;
      }
      case "proxy-blackhole":
        proxy.blackhole(f.ms);
        note(`new connections refused for ${f.ms} ms`);
        return true;
      case "proxy-ws-block":
        note(`WebSocket upgrades blocked for ${f.ms} ms (${proxy.blockWebSockets(f.ms)} open WebSocket(s) reset)`);
        return true;
      case "api-cut": {
        // POSTs are short and come in bursts: watch for one (a connection is open while
        // it runs and shortly after) rather than sampling once.
        for (let waited = 0; this.#apiProxy.openConnections === 0 && waited < API_CUT_WAIT_MS && !this.#stopped; waited += 25) await sleep(25);
        if (this.#apiProxy.openConnections === 0) return "no open management API connection";
        note(`${this.#apiProxy.cutAll()} management API connection(s) reset`);
        return true;
      }
      case "agent-restart": {
        // Carried like any command (an offline agent restarts when it returns); the steps
        // its worker ran are re-attached by the next one.
        if (held) return `every agent is held by a scenario`;
        const r = await this.#api.http(this.#server.base, "POST", `/api/v1/agents/${agent.id}/restart`, {});
        if (r.status !== 202) return `restart not accepted: ${r.status} ${r.text.slice(0, 200)}`;
        note(`restart of ${agent.name} requested through the API`);
        return true;
      }
      case "agent-upgrade": {
        if (held) return `every agent is held by a scenario`;
        if (agent.down) return `agent ${agent.name} is down`;
        if (this.upgradeVersions.length < 2) return "no packaged versions to upgrade to";
        const now = await this.#api.http(this.#server.base, "GET", `/api/v1/agents/${agent.id}`);
        if (now.status !== 200) return `agent view: ${now.status}`;
        const busy = now.json?.upgrade && !["succeeded", "rolled-back", "failed"].includes(now.json.upgrade.state);
        if (busy) return `agent ${agent.name} is still upgrading (${now.json.upgrade.state})`;
        const to = this.upgradeVersions.find((v) => v !== now.json?.version) ?? this.upgradeVersions[0];
        const r = await this.#api.http(this.#server.base, "POST", `/api/v1/agents/${agent.id}/upgrade`, { version: to });
        if (r.status !== 202) return `upgrade not accepted: ${r.status} ${r.text.slice(0, 200)}`;
        note(`upgrade of ${agent.name} (on ${now.json?.version}) to ${to} requested through the API`);
        return true;
      }
      case "worker-kill": {
        if (held) return `every agent is held by a scenario`;
        if (agent.down) return `agent ${agent.name} is down`;
        const pid = readPid(join(agent.home, "worker.pid"));
        if (!pid || !alive(pid)) return `no live worker for ${agent.name}`;
        process.kill(pid, "SIGKILL");
        note(`kill -9 worker ${pid} of ${agent.name}`);
        return true;
      }
      case "worker-kill-at-step-start": {
        // the first agent (not held, not down) to start a step: its worker is killed in
        // the few ms around journaling "started" and spawning the step — before the
        // commit (the step is started again), between (interrupted, or re-run if safe),
        // or after the spawn (re-attached)
        const targets = this.#fleet.agents.filter((a) => !a.down && !this.#heldAgents.has(a.name) && existsSync(join(a.home, "steps")));
        if (targets.length === 0) return "no agent to watch";
        const hit = await new Promise<{ agent: (typeof targets)[number]; step: string; delay: number } | null>((resolve) => {
          const watchers: FSWatcher[] = [];
          const done = (v: { agent: (typeof targets)[number]; step: string; delay: number } | null) => {
            for (const w of watchers) w.close();
            clearTimeout(timer);
            resolve(v);
          };
          const timer = setTimeout(() => done(null), 10_000);
          for (const a of targets) {
            const dir = join(a.home, "steps");
            const known = new Set(readdirSync(dir));
            watchers.push(
              watch(dir, (_event, name) => {
                if (!name || known.has(String(name))) return;
                known.add(String(name));
                if (!a.down && !this.#stopped && !this.#heldAgents.has(a.name)) done({ agent: a, step: String(name), delay: Math.floor(this.#random() * 11) });
              }),
            );
          }
        });
        if (!hit) return "no step started within 10 s";
        await sleep(hit.delay);
        const pid = readPid(join(hit.agent.home, "worker.pid"));
        if (!pid || !alive(pid)) return `no live worker for ${hit.agent.name}`;
        process.kill(pid, "SIGKILL");
        this.stepStartKills.push({ agent: hit.agent.name, stepId: hit.step, delayMs: hit.delay });
        note(`kill -9 worker ${pid} of ${hit.agent.name} ${hit.delay} ms after step ${hit.step} appeared`);
        return true;
      }
      case "monitor-kill": {
        if (held) return `every agent is held by a scenario`;
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
          if (!this.#stopped && agent.down) this.#fleet.launch(agent);
        }, f.ms);
        return true;
      }
      case "server-kill": {
        if (this.#serverBusy) await this.#serverBusy;
        const heldSince = Date.now();
        while (this.#serverHolds > 0 && !this.#stopped) await sleep(200);
        if (this.#stopped) return "the fault phase ended while a scenario held the server";
        if (Date.now() - heldSince > 500) note(`waited ${Date.now() - heldSince} ms for a scenario to release the server`);
        const t0 = Date.now();
        this.#serverBusy = (async () => {
          await this.#server.stop("SIGKILL");
          await sleep(f.ms);
          await this.#server.start();
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
        const r = await this.#api.http(this.#server.base, "POST", `/api/v1/test-hooks/agents/${agent.id}/evict`, {});
        if (r.status === 404 || r.status === 405) return `unsupported: POST /api/v1/test-hooks/agents/:id/evict answered ${r.status} ${r.text.slice(0, 120)}`;
        if (r.status >= 300) return `evict answered ${r.status} ${r.text.slice(0, 200)}`;
        note(`Durable Object of ${agent.name} evicted`);
        return true;
      }
    }
  }
}
