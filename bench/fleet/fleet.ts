// The fleet driver (`npm run bench:fleet`, test/e2e/fleet.test.ts): a real local
// server (TestServer: scripts/server.ts → wrangler dev → workerd), N simulated agents
// (sim-agent.ts) in this process, and four measurements:
//   1. online: all N started at once → GET /api/v1/agents shows all N online AND every
//      sim's hello was answered;
//   2. deploy: one deployment of one no-op shell step to all N (by their common tag;
//      if the server caps agents per deployment, as few deployments as the cap
//      allows) → every step's result in, as the API says (the step counts of
//      GET /api/v1/deployments; the full GET /api/v1/deployments/:id is read after);
//      each step id must have run exactly once, on its own agent, and succeeded;
//   3. restart: the server kill -9'd and started again on the same port and state →
//      all N back online, each sim reconnecting by itself with the agent's back-off;
//      the spread of their first reconnects, connect attempts per second, and what
//      the API claims 10 s after the server answers again;
//   4. memory: peak RSS of the server's processes (workerd alone, and the whole tree).
// It returns figures; run.ts prints them, the test asserts on them.
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LIMITS } from "../../schema/limits.ts";
import type { AgentView, DeploymentSummary, DeploymentView, StepView } from "../../schema/api.ts";
import { AGENT_VERSION } from "../../agent/version.ts";
import { DEFAULT_LOG_LEVEL } from "../../agent/log.ts";
import { projectRoot, type Api, type TestServer } from "../../test/support/local-server.ts";
import { now, registerSimAgent, SimAgent, type Problem } from "./sim-agent.ts";

export const FLEET_TAG = "fleet";
const STALE_SAMPLE_AFTER_MS = 10_000; // goal 3: what the API claims this long after the server is back
const API_POLL_MS = 200;
const DEPLOY_POLL_MS = 250;
const ADMIN_TIMEOUT_MS = 120_000; // a management call this slow is a finding in itself
const READ_TIMEOUT_MS = 60_000; // reads are polled: one that times out is tried again

export type FleetOptions = {
  agents: number;
  log?: (line: string) => void;
  keepWork?: boolean; // keep the server's work dir (state, logs) even when all went well
  // Run the server from a frozen copy of the project tree (node_modules linked), not
  // from the working tree: wrangler dev rebuilds and restarts the Worker — dropping
  // every WebSocket — whenever a source file changes, so edits made while the bench
  // runs would show up as mass disconnects. Default true.
  snapshot?: boolean;
  // Start the agents evenly over this many ms instead of all at once (default 0). The
  // online figure counts from the first start, so it includes the ramp.
  rampMs?: number;
};

export type Stats = { n: number; p50: number; p90: number; max: number };

export type StaleSample = { atMs: number; apiOnline: number; simConnected: number; onlineButNotConnected: number; offlineButConnected: number };

export type FleetResult = {
  n: number;
  rampMs: number;
  work: string;
  openFilesLimit: number | null;
  setup: { tokensMs: number; registerMs: number };
  online: { ms: number | null; socketsMs: number | null; apiOnline: number; welcomed: number; firstWelcome: Stats | null };
  deploy: {
    tagRefusal: string | null; // the server's answer when one deployment to all N was refused
    deployments: { id: string | null; agents: number; status: number; postMs: number }[];
    firstPostMs: number | null; // the one-deployment POST's own time to its answer
    ms: number | null; // first POST sent → every step's result readable
    lastAckMs: number | null; // first POST sent → the last sim heard its last report acknowledged
    steps: number;
    stepStatus: Record<string, number>;
    ranTwice: string[];
    neverRan: string[];
    strayRuns: string[]; // run by a sim the deployment did not name, or unknown to every deployment
  };
  restart: {
    killToBackMs: number | null; // kill -9 → the server answers again
    ms: number | null; // server answers again → all N back online (API) with a welcomed socket each
    reconnected: number;
    firstReconnect: Stats | null; // per agent: first welcome after the kill, from the server answering again
    peakAttemptsPerSec: { afterBack: number; whileDown: number };
    peakPullsPerSec: { afterBack: number; whileDown: number };
    connectsPerSecond: { second: number; connects: number; pulls: number }[]; // from the kill, seconds relative to the server answering again
    attemptsPerAgent: Stats | null; // WebSocket connect attempts from the kill to its first welcome
    staleAt10s: StaleSample | null;
    series: StaleSample[];
    resultsKept: boolean | null; // every deployment still shows all steps succeeded afterwards
  };
  memory: { idleWorkerdBytes: number; peakWorkerdBytes: number; peakLargestWorkerdBytes: number; peakTreeBytes: number; workerdProcesses: number; samples: number };
  // Open file descriptors at peak: the workerd process holding the most, its limit, and this process's.
  fds: { peakWorkerd: number; workerdLimit: number | null; peakBench: number };
  // CPU seconds per phase: workerd, the rest of the server's tree (wrangler, launcher), this process.
  cpu: { phase: string; wallS: number; workerdS: number; restS: number; simS: number; workerdBytesAtEnd: number }[];
  // Where the time went, as the sims saw it, per phase: WebSocket upgrade (connect → 101),
  // hello → welcome, and each HTTP route's latency (long polls that waited left out).
  latency: { phase: string; what: string; stats: Stats }[];
  unexpectedCloses: number; // open sockets dropped (not 1000/1001) outside the kill-to-answer window
  problems: Problem[];
  adminProblems: string[]; // unexpected answers to the bench's own management API calls
  slowReads: string[]; // the bench's polling reads that took over 10 s (or got no answer)
  statuses: [string, number][];
  failures: string[]; // reasons the run is a failure (not missed goals)
};

// ------------------------------------------------------------------- helpers --

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function pct(sorted: number[], p: number): number {
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
}

export function stats(samples: number[]): Stats | null {
  if (samples.length === 0) return null;
  const s = [...samples].sort((a, b) => a - b);
  return { n: s.length, p50: pct(s, 50), p90: pct(s, 90), max: s[s.length - 1] };
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i], i);
      }
    }),
  );
  return out;
}

// Polls `check` every `everyMs` until it returns true; the time it did (now()), or null.
async function until(check: () => Promise<boolean> | boolean, timeoutMs: number, everyMs: number): Promise<number | null> {
  const t0 = now();
  while (now() - t0 < timeoutMs) {
    try {
      if (await check()) return now();
    } catch {
      /* the server may be restarting: try again */
    }
    await sleep(everyMs);
  }
  return null;
}

// Connect attempts per 1-second bucket (relative to `zero`): the busiest bucket at or
// after zero, and before it.
function peakPerSecond(times: number[], zero: number): { afterBack: number; whileDown: number } {
  const buckets = new Map<number, number>();
  for (const t of times) {
    const b = Math.floor((t - zero) / 1000);
    buckets.set(b, (buckets.get(b) ?? 0) + 1);
  }
  let afterBack = 0;
  let whileDown = 0;
  for (const [b, n] of buckets) {
    if (b >= 0) afterBack = Math.max(afterBack, n);
    else whileDown = Math.max(whileDown, n);
  }
  return { afterBack, whileDown };
}

export function openFilesLimit(): number | null {
  try {
    const m = readFileSync("/proc/self/limits", "utf8").match(/^Max open files\s+(\d+|unlimited)/m);
    return m ? (m[1] === "unlimited" ? Infinity : Number(m[1])) : null;
  } catch {
    return null;
  }
}

// ------------------------------------------------------- server processes --

const CLK_TCK = 100; // USER_HZ: /proc's cpu times are in these ticks on Linux

// The local server's processes, from /proc: the launcher's process group (scripts/server.ts
// keeps wrangler and workerd in it) and every descendant of the launcher. Peak RSS
// (workerd alone, and the whole tree) and CPU seconds used (workerd, the rest).
class ServerProcesses {
  peakWorkerdBytes = 0;
  peakTreeBytes = 0;
  workerdProcesses = 0;
  samples = 0;
  lastWorkerdBytes = 0;
  peakWorkerdFds = 0; // open file descriptors of the workerd process holding the most
  peakSelfFds = 0; // this process's (the sims' sockets)
  fdLimit: number | null = null; // the workerd processes' "Max open files"
  peakLargestWorkerdBytes = 0; // the biggest single workerd process (the one running the Worker and its objects)
  readonly #cpuTicks = new Map<number, { workerd: boolean; ticks: number }>(); // last seen, per pid (dead ones kept)
  #timer: NodeJS.Timeout | null = null;
  readonly #root: () => number | undefined;

  constructor(root: () => number | undefined) {
    this.#root = root;
  }

  start(everyMs = 500): void {
    this.#timer = setInterval(() => this.sample(), everyMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  // CPU seconds the server's processes have used so far (sampled now).
  cpuSeconds(): { workerd: number; rest: number } {
    this.sample();
    let workerd = 0;
    let rest = 0;
    for (const p of this.#cpuTicks.values()) {
      if (p.workerd) workerd += p.ticks;
      else rest += p.ticks;
    }
    return { workerd: workerd / CLK_TCK, rest: rest / CLK_TCK };
  }

  sample(): void {
    const root = this.#root();
    if (root === undefined) return;
    const procs = new Map<number, { ppid: number; pgrp: number; comm: string; ticks: number }>();
    for (const d of readdirSync("/proc")) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const stat = readFileSync(`/proc/${d}/stat`, "utf8");
        const close = stat.lastIndexOf(")");
        const rest = stat.slice(close + 2).split(" "); // rest[k - 3] is field k of proc(5)
        procs.set(Number(d), { comm: stat.slice(stat.indexOf("(") + 1, close), ppid: Number(rest[1]), pgrp: Number(rest[2]), ticks: Number(rest[11]) + Number(rest[12]) });
      } catch {
        /* gone */
      }
    }
    const tree = new Set<number>([...procs].filter(([, p]) => p.pgrp === root).map(([pid]) => pid));
    if (procs.has(root)) tree.add(root);
    for (let grew = true; grew; ) {
      grew = false;
      for (const [pid, p] of procs) if (!tree.has(pid) && tree.has(p.ppid)) (tree.add(pid), (grew = true));
    }
    let total = 0;
    let workerd = 0;
    let workerdCount = 0;
    let largest = 0;
    for (const pid of tree) {
      const p = procs.get(pid)!;
      const isWorkerd = p.comm.startsWith("workerd");
      this.#cpuTicks.set(pid, { workerd: isWorkerd, ticks: p.ticks });
      try {
        const kb = Number(readFileSync(`/proc/${pid}/status`, "utf8").match(/^VmRSS:\s+(\d+) kB/m)?.[1] ?? 0);
        total += kb * 1024;
        if (isWorkerd) {
          workerd += kb * 1024;
          workerdCount++;
          largest = Math.max(largest, kb * 1024);
        }
      } catch {
        /* gone */
      }
    }
    for (const pid of tree) {
      if (!procs.get(pid)!.comm.startsWith("workerd")) continue;
      try {
        this.peakWorkerdFds = Math.max(this.peakWorkerdFds, readdirSync(`/proc/${pid}/fd`).length);
        this.fdLimit ??= Number(readFileSync(`/proc/${pid}/limits`, "utf8").match(/^Max open files\s+(\d+)/m)?.[1] ?? NaN) || null;
      } catch {
        /* gone */
      }
    }
    try {
      this.peakSelfFds = Math.max(this.peakSelfFds, readdirSync("/proc/self/fd").length);
    } catch {
      /* no /proc */
    }
    this.samples++;
    this.lastWorkerdBytes = workerd;
    this.peakLargestWorkerdBytes = Math.max(this.peakLargestWorkerdBytes, largest);
    this.peakTreeBytes = Math.max(this.peakTreeBytes, total);
    if (workerd > this.peakWorkerdBytes) {
      this.peakWorkerdBytes = workerd;
      this.workerdProcesses = workerdCount;
    }
  }
}

// CPU used during a phase: the server's workerd, the rest of its tree, and this process
// (the sims and the bench itself), beside the wall time. On this 2-core machine a
// phase's CPU near 2 × its wall time means the machine itself was the limit.
class CpuMeter {
  readonly #procs: ServerProcesses;
  #from = { wall: 0, workerd: 0, rest: 0, self: 0 };
  constructor(procs: ServerProcesses) {
    this.#procs = procs;
  }
  #read() {
    const c = this.#procs.cpuSeconds();
    const u = process.cpuUsage();
    return { wall: now() / 1000, workerd: c.workerd, rest: c.rest, self: (u.user + u.system) / 1e6 };
  }
  begin(): void {
    this.#from = this.#read();
  }
  end(phase: string): FleetResult["cpu"][number] {
    const to = this.#read();
    const f = this.#from;
    return { phase, wallS: to.wall - f.wall, workerdS: to.workerd - f.workerd, restS: to.rest - f.rest, simS: to.self - f.self, workerdBytesAtEnd: this.#procs.lastWorkerdBytes };
  }
}

// The sims' latencies of requests sent within [from, to], per kind.
function latencies(sims: SimAgent[], phase: string, from: number, to: number): FleetResult["latency"] {
  const out: FleetResult["latency"] = [];
  const inside = (x: { at: number }) => x.at >= from && x.at <= to;
  const add = (what: string, xs: number[]) => {
    const st = stats(xs);
    if (st) out.push({ phase, what, stats: st });
  };
  add("WebSocket connect → 101", sims.flatMap((s) => s.upgradeMs.filter(inside).map((x) => x.ms)));
  add("hello → welcome", sims.flatMap((s) => s.helloToWelcomeMs.filter(inside).map((x) => x.ms)));
  const routes = new Set(sims.flatMap((s) => s.httpMs.map((x) => x.route)));
  for (const route of [...routes].sort()) add(route, sims.flatMap((s) => s.httpMs.filter((x) => x.route === route && inside(x)).map((x) => x.ms)));
  return out;
}

// The management API as TestServer.api calls it, with a longer timeout; no answer at
// all (network error, timeout) is status 0 with the error as its text.
async function admin(server: TestServer, method: string, path: string, body?: unknown, timeoutMs = ADMIN_TIMEOUT_MS, headers: Record<string, string> = {}): Promise<Api> {
  try {
    const r = await fetch(server.base + path, {
      method,
      headers: { authorization: `Bearer ${server.adminToken}`, ...(body === undefined ? {} : { "content-type": "application/json" }), ...headers },
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
  } catch (e) {
    return { status: 0, json: undefined, text: `no answer: ${e instanceof Error ? e.message : String(e)}` };
  }
}

// ---------------------------------------------------------------------- run --

// A copy of the project tree without node_modules (linked), .git and .wrangler.
function snapshotTree(): string {
  const dir = mkdtempSync(join(tmpdir(), "outpost-fleet-tree-"));
  for (const e of readdirSync(projectRoot)) {
    if (e === "node_modules" || e === ".git" || e === ".wrangler") continue;
    cpSync(join(projectRoot, e), join(dir, e), { recursive: true });
  }
  symlinkSync(join(projectRoot, "node_modules"), join(dir, "node_modules"));
  return dir;
}

// Servers of runs under way: the server runs in its own process group, so a Ctrl-C or
// a SIGTERM to the bench does not reach it; the CLI stops them through this.
const running = new Set<TestServer>();
export async function stopRunningServers(): Promise<void> {
  await Promise.all([...running].map((s) => s.stop()));
}

export async function runFleet(opts: FleetOptions): Promise<FleetResult> {
  const N = opts.agents;
  const log = opts.log ?? (() => undefined);
  const tree = opts.snapshot === false ? projectRoot : snapshotTree();
  const support = (await import(join(tree, "test/support/local-server.ts"))) as typeof import("../../test/support/local-server.ts");
  const server: TestServer = new support.TestServer();
  running.add(server);
  const memory = new ServerProcesses(() => server.proc?.pid);
  const cpu = new CpuMeter(memory);
  const adminProblems: string[] = [];
  const slowReads: string[] = [];
  const failures: string[] = [];
  const names = Array.from({ length: N }, (_, i) => `sim-${String(i + 1).padStart(String(N).length, "0")}`);
  const fleetNames = new Set(names);
  let sims: SimAgent[] = [];
  let idleWorkerdBytes = 0; // right after the server first answers, before any agent
  let killWindow: [number, number] = [Infinity, Infinity]; // kill sent → server answers again

  const result: FleetResult = {
    n: N,
    rampMs: opts.rampMs ?? 0,
    work: server.work,
    openFilesLimit: openFilesLimit(),
    setup: { tokensMs: 0, registerMs: 0 },
    online: { ms: null, socketsMs: null, apiOnline: 0, welcomed: 0, firstWelcome: null },
    deploy: { tagRefusal: null, deployments: [], firstPostMs: null, ms: null, lastAckMs: null, steps: 0, stepStatus: {}, ranTwice: [], neverRan: [], strayRuns: [] },
    restart: {
      killToBackMs: null,
      ms: null,
      reconnected: 0,
      firstReconnect: null,
      peakAttemptsPerSec: { afterBack: 0, whileDown: 0 },
      peakPullsPerSec: { afterBack: 0, whileDown: 0 },
      connectsPerSecond: [],
      attemptsPerAgent: null,
      staleAt10s: null,
      series: [],
      resultsKept: null,
    },
    memory: { idleWorkerdBytes: 0, peakWorkerdBytes: 0, peakLargestWorkerdBytes: 0, peakTreeBytes: 0, workerdProcesses: 0, samples: 0 },
    fds: { peakWorkerd: 0, workerdLimit: null, peakBench: 0 },
    cpu: [],
    latency: [],
    unexpectedCloses: 0,
    problems: [],
    adminProblems,
    slowReads,
    statuses: [],
    failures,
  };

  // The fleet's agents as GET /api/v1/agents shows them.
  const fleetOnline = async (timeoutMs = READ_TIMEOUT_MS): Promise<Set<string>> => {
    const t1 = now();
    const r = await admin(server, "GET", "/api/v1/agents", undefined, timeoutMs);
    if (now() - t1 > 10_000) slowReads.push(`GET /api/v1/agents took ${((now() - t1) / 1000).toFixed(1)} s (HTTP ${r.status || "none"})`);
    if (r.status !== 200) throw new Error(`GET /api/v1/agents: HTTP ${r.status} ${r.text.slice(0, 200)}`);
    return new Set((r.json.agents as AgentView[]).filter((a) => a.status === "online" && fleetNames.has(a.name)).map((a) => a.name));
  };

  try {
    log(`Starting the local server from ${tree === projectRoot ? "the working tree" : `a copy of the tree, ${tree}`} (work dir ${server.work})…`);
    await server.start();
    memory.sample();
    idleWorkerdBytes = memory.lastWorkerdBytes;
    memory.start();

    // ---- registration: one single-use token per agent ----
    log(`Creating ${N} registration tokens and registering ${N} agents (tag "${FLEET_TAG}")…`);
    cpu.begin();
    let t = now();
    const tokens = await mapLimit(names, 16, async (name) => {
      const r = await admin(server, "POST", "/api/v1/registration-tokens", {});
      if (r.status !== 201) throw new Error(`POST /api/v1/registration-tokens for ${name}: HTTP ${r.status} ${r.text}`);
      return r.json.token as string;
    });
    result.setup.tokensMs = now() - t;
    t = now();
    const creds = await mapLimit(names, 32, (name, i) => registerSimAgent(server.base, { token: tokens[i], name, version: AGENT_VERSION, tags: [FLEET_TAG] }));
    result.setup.registerMs = now() - t;
    result.cpu.push(cpu.end("0. register"));
    sims = names.map(
      (name, i) =>
        new SimAgent({ base: server.base, name, agentId: creds[i].agentId, credential: creds[i].credential, version: AGENT_VERSION, config: { concurrency: 4, logLevel: DEFAULT_LOG_LEVEL } }),
    );

    // ---- 1. all N online ----
    const rampMs = opts.rampMs ?? 0;
    log(rampMs > 0 ? `Starting ${N} simulated agents evenly over ${(rampMs / 1000).toFixed(1)} s…` : `Starting ${N} simulated agents at once…`);
    cpu.begin();
    const t0 = now();
    if (rampMs === 0) for (const s of sims) s.start();
    else sims.forEach((s, i) => setTimeout(() => s.start(), (i * rampMs) / N));
    let socketsAt: number | null = null;
    let lastProgress = t0;
    const onlineAt = await until(
      async () => {
        const welcomed = sims.filter((s) => s.connected).length;
        if (socketsAt === null && welcomed === N) socketsAt = now();
        if (welcomed === N || now() - lastProgress > 15_000) result.online.apiOnline = (await fleetOnline()).size;
        if (now() - lastProgress > 15_000) {
          lastProgress = now();
          log(`  … ${((now() - t0) / 1000).toFixed(0)} s: ${welcomed} sockets welcomed, API shows ${result.online.apiOnline} online`);
        }
        return socketsAt !== null && result.online.apiOnline === N;
      },
      60_000 + 300 * N + rampMs,
      API_POLL_MS,
    );
    result.cpu.push(cpu.end("1. online"));
    result.online.welcomed = sims.filter((s) => s.welcomes.length > 0).length;
    result.online.firstWelcome = stats(sims.filter((s) => s.welcomes.length > 0).map((s) => s.welcomes[0] - t0));
    if (socketsAt !== null) result.online.socketsMs = socketsAt - t0;
    result.latency.push(...latencies(sims, "1. online", t0, onlineAt ?? now()));
    if (onlineAt === null) {
      // Go on with whoever is there: the later phases still say what they can.
      result.online.apiOnline = (await fleetOnline().catch(() => new Set())).size;
      failures.push(`not all ${N} agents came online (API: ${result.online.apiOnline} online, sims: ${sims.filter((s) => s.connected).length} connected)`);
      log(`  not all online in time: ${failures.at(-1)}; going on`);
    } else {
      result.online.ms = onlineAt - t0;
      log(`  all ${N} online after ${(result.online.ms / 1000).toFixed(1)} s`);
    }

    // ---- 2. one deployment to all N ----
    const steps = [{ name: "noop", type: "shell", command: "true" }];
    log(`Deploying one no-op step to all ${N} agents (targets.tags ["${FLEET_TAG}"])…`);
    cpu.begin();
    let tDeploy = now();
    const first = await admin(server, "POST", "/api/v1/deployments", { name: `fleet of ${N}`, targets: { tags: [FLEET_TAG] }, steps }, ADMIN_TIMEOUT_MS, { "idempotency-key": `fleet-${N}-all` });
    result.deploy.firstPostMs = now() - tDeploy;
    if (first.status === 201) {
      result.deploy.deployments.push({ id: first.json.id, agents: N, status: 201, postMs: result.deploy.firstPostMs });
    } else if (first.status !== 422 || N <= LIMITS.agentsPerDeployment) {
      // No answer, or a refusal that is not the cap: whether it was created is unknown (or
      // it was not); nothing to wait for.
      adminProblems.push(`POST /api/v1/deployments (tags, ${N} agents): ${first.status === 0 ? "" : "HTTP "}${first.status} ${first.text.slice(0, 300)}`);
      log(`  no deployment: ${adminProblems.at(-1)}`);
    } else {
      result.deploy.tagRefusal = `HTTP ${first.status} ${first.text.slice(0, 300)}`;
      // The cap on agents per deployment: as few deployments as it allows, by name, at once.
      const cap = LIMITS.agentsPerDeployment;
      const chunks = Array.from({ length: Math.ceil(N / cap) }, (_, i) => names.slice(i * cap, (i + 1) * cap));
      log(`  refused (${result.deploy.tagRefusal.slice(0, 160)}); falling back to ${chunks.length} deployments of ≤ ${cap} agents`);
      tDeploy = now();
      result.deploy.deployments = await Promise.all(
        chunks.map(async (agents, i) => {
          const t1 = now();
          const r = await admin(server, "POST", "/api/v1/deployments", { name: `fleet of ${N}, part ${i + 1}/${chunks.length}`, agents, steps }, ADMIN_TIMEOUT_MS, {
            "idempotency-key": `fleet-${N}-part-${i + 1}`,
          });
          if (r.status !== 201) adminProblems.push(`POST /api/v1/deployments (part ${i + 1}, ${agents.length} agents): HTTP ${r.status} ${r.text.slice(0, 300)}`);
          return { id: r.status === 201 ? (r.json.id as string) : null, agents: agents.length, status: r.status, postMs: now() - t1 };
        }),
      );
    }
    const ids = result.deploy.deployments.flatMap((d) => (d.id ? [d.id] : []));
    // Polled through the paged list, whose entries carry step counts: cheap for the
    // server whatever the size of the deployment (the full view of a 1000-step
    // deployment, polled every 250 ms, would add load to what is measured). The full
    // views are read once at the end, for the step accounting.
    const open = new Set(ids);
    const deployedAt =
      ids.length === 0
        ? null
        : await until(
            async () => {
              const t1 = now();
              const r = await admin(server, "GET", `/api/v1/deployments?limit=${Math.min(100, ids.length + 10)}`, undefined, READ_TIMEOUT_MS);
              if (now() - t1 > 10_000) slowReads.push(`GET /api/v1/deployments took ${((now() - t1) / 1000).toFixed(1)} s (HTTP ${r.status || "none"})`);
              if (r.status !== 200) {
                if (r.status !== 0) adminProblems.push(`GET /api/v1/deployments: HTTP ${r.status} ${r.text.slice(0, 200)}`);
                return false;
              }
              for (const d of r.json.deployments as DeploymentSummary[]) {
                if (open.has(d.id) && d.stepCounts.pending + d.stepCounts.running === 0) open.delete(d.id);
              }
              return open.size === 0;
            },
            60_000 + 60 * N,
            DEPLOY_POLL_MS,
          );
    const views = new Map<string, DeploymentView>();
    for (const id of ids) {
      const r = await admin(server, "GET", `/api/v1/deployments/${id}`, undefined, READ_TIMEOUT_MS);
      if (r.status === 200) views.set(id, r.json as DeploymentView);
      else adminProblems.push(`GET /api/v1/deployments/${id}: ${r.status === 0 ? "" : "HTTP "}${r.status} ${r.text.slice(0, 200)}`);
    }
    result.cpu.push(cpu.end("2. deploy"));
    if (deployedAt !== null) result.deploy.ms = deployedAt - tDeploy;
    result.latency.push(...latencies(sims, "2. deploy", tDeploy, deployedAt ?? now()));
    const lastAck = Math.max(...sims.map((s) => s.reportsAckedAt));
    if (lastAck > tDeploy) result.deploy.lastAckMs = lastAck - tDeploy;
    log(ids.length === 0 ? "  nothing deployed" : deployedAt === null ? "  not every step's result arrived in time" : `  every step's result recorded after ${(result.deploy.ms! / 1000).toFixed(1)} s`);
    checkRuns(result, [...views.values()], sims, N);

    // ---- 3. server kill -9 and restart ----
    await until(() => sims.every((s) => s.outboxSize === 0), 10_000, 100);
    log("Killing the server (SIGKILL to its process group) and starting it again on the same port and state…");
    cpu.begin();
    const tKill = now();
    killWindow = [tKill, Infinity];
    await server.stop("SIGKILL");
    // The server answers again at the first answer anyone gets after the kill: a probe
    // of a cheap route (no token, no D1), or a sim's (a 101, an HTTP answer to a
    // request sent after the kill) — the sims' requests are often answered first, the
    // probe waiting behind the backlog of their upgrades.
    let probeAt: number | null = null;
    let probing = true;
    const probe = (async () => {
      while (probing && probeAt === null) {
        try {
          const r = await fetch(`${server.base}/vocabulary.js`, { signal: AbortSignal.timeout(2_000) });
          await r.arrayBuffer();
          if (r.status === 200) probeAt = now();
        } catch {
          /* not yet */
        }
        if (probeAt === null) await sleep(50);
      }
    })();
    const firstSimAnswer = () =>
      Math.min(...sims.flatMap((s) => [...s.upgradeMs, ...s.httpMs].filter((x) => x.at >= tKill).map((x) => x.at + x.ms)));
    const started = server.start().then(
      () => null,
      (e: unknown) => (e instanceof Error ? e.message : String(e)),
    );
    const seenBack = await until(() => probeAt !== null || firstSimAnswer() < Infinity, 180_000, 50);
    probing = false;
    if (seenBack === null) {
      failures.push("the server did not answer again within 180 s of its restart");
      return result;
    }
    const back: number = Math.min(probeAt ?? Infinity, firstSimAnswer());
    killWindow = [tKill, back];
    result.restart.killToBackMs = back - tKill;
    log(`  the server answers again ${(result.restart.killToBackMs / 1000).toFixed(1)} s after the kill; waiting for the agents…`);

    const sampleStale = async (): Promise<StaleSample> => {
      const online = await fleetOnline(10_000);
      const at = now();
      const connected = new Set(sims.filter((s) => s.connected).map((s) => s.name));
      return {
        atMs: at - back,
        apiOnline: online.size,
        simConnected: connected.size,
        onlineButNotConnected: [...online].filter((n) => !connected.has(n)).length,
        offlineButConnected: [...connected].filter((n) => !online.has(n)).length,
      };
    };
    const reconnectTimeoutMs = 120_000 + 60 * N;
    const series = (async () => {
      for (let k = 1; k <= 30 && now() - back < reconnectTimeoutMs; k++) {
        await sleep(Math.max(0, back + k * 1000 - now()));
        const s = await sampleStale().catch(() => null);
        if (s) result.restart.series.push(s);
        if (k * 1000 === STALE_SAMPLE_AFTER_MS) result.restart.staleAt10s = s; // taken at ≥ 10 s: sleep() never wakes early
        if (k * 1000 >= STALE_SAMPLE_AFTER_MS && s && s.simConnected === N && s.apiOnline === N && s.onlineButNotConnected === 0) break;
      }
    })();
    const reconnectedSince = (s: SimAgent) => s.connected && s.welcomes.some((w) => w > tKill);
    let lastReport = now();
    let apiSays = "not asked yet";
    const allBack = await until(
      async () => {
        if (now() - lastReport > 15_000) {
          lastReport = now();
          log(`  … ${((now() - back) / 1000).toFixed(0)} s: ${sims.filter(reconnectedSince).length} reconnected; API: ${apiSays}`);
        }
        if (!sims.every(reconnectedSince)) return false;
        const online = await fleetOnline().catch((e: Error) => ((apiSays = e.message), null));
        if (online) apiSays = `${online.size} online`;
        return online?.size === N;
      },
      reconnectTimeoutMs,
      API_POLL_MS,
    );
    await series;
    await probe;
    const startFailed = await started; // TestServer.start: its own wait for GET /api/v1/agents
    if (startFailed) failures.push(`restarting the server: ${startFailed}`);
    result.cpu.push(cpu.end("3. restart"));
    result.restart.reconnected = sims.filter(reconnectedSince).length;
    result.latency.push(...latencies(sims, "3. reconnect", back, allBack ?? now()));
    if (allBack === null) failures.push(`not all agents came back after the restart: ${result.restart.reconnected}/${N} reconnected`);
    else result.restart.ms = allBack - back;
    result.restart.firstReconnect = stats(sims.flatMap((s) => s.welcomes.filter((w) => w > tKill).slice(0, 1).map((w) => w - back)));
    const attempts = sims.flatMap((s) => s.connectAttempts.filter((a) => a >= tKill));
    result.restart.peakAttemptsPerSec = peakPerSecond(attempts, back);
    const pulls = sims.flatMap((s) => s.pullAttempts.filter((a) => a >= tKill));
    result.restart.peakPullsPerSec = peakPerSecond(pulls, back);
    const end = allBack ?? now();
    for (let sec = Math.floor((tKill - back) / 1000); sec <= Math.floor((end - back) / 1000); sec++) {
      const inSec = (t: number) => t >= back + sec * 1000 && t < back + (sec + 1) * 1000;
      result.restart.connectsPerSecond.push({ second: sec, connects: attempts.filter(inSec).length, pulls: pulls.filter(inSec).length });
    }
    result.restart.attemptsPerAgent = stats(
      sims.map((s) => {
        const w = s.welcomes.find((x) => x > tKill) ?? Infinity;
        return s.connectAttempts.filter((a) => a >= tKill && a <= w).length;
      }),
    );
    log(allBack === null ? "  not every agent came back in time" : `  all ${N} back online ${(result.restart.ms! / 1000).toFixed(1)} s after the server answered again`);

    // Nothing ran again, and every result survived the restart.
    let kept = true;
    for (const id of ids) {
      const r = await admin(server, "GET", `/api/v1/deployments/${id}`, undefined, READ_TIMEOUT_MS);
      if (r.status !== 200 || !(r.json as DeploymentView).steps.every((s) => s.status === "succeeded")) kept = false;
      if (r.status === 200) views.set(id, r.json as DeploymentView);
    }
    result.restart.resultsKept = kept;
    if (!kept) failures.push("after the restart, not every deployment shows all its steps succeeded");
    checkRuns(result, [...views.values()], sims, N);
    return result;
  } finally {
    memory.sample();
    memory.stop();
    result.fds = { peakWorkerd: memory.peakWorkerdFds, workerdLimit: memory.fdLimit, peakBench: memory.peakSelfFds };
    result.memory = { idleWorkerdBytes, peakWorkerdBytes: memory.peakWorkerdBytes, peakLargestWorkerdBytes: memory.peakLargestWorkerdBytes, peakTreeBytes: memory.peakTreeBytes, workerdProcesses: memory.workerdProcesses, samples: memory.samples };
    await Promise.all(sims.map((s) => s.stop()));
    result.unexpectedCloses = sims.flatMap((s) => s.closes).filter((c) => c.opened && c.code !== 1000 && c.code !== 1001 && (c.at < killWindow[0] || c.at > killWindow[1])).length;
    result.problems = sims.flatMap((s) => s.problems).sort((a, b) => a.at - b.at);
    const statuses = new Map<string, number>();
    for (const s of sims) for (const [k, v] of s.statuses) statuses.set(k, (statuses.get(k) ?? 0) + v);
    result.statuses = [...statuses].sort(([a], [b]) => a.localeCompare(b));
    const protocol = result.problems.filter((p) => p.kind === "protocol");
    if (protocol.length > 0) failures.push(`${protocol.length} protocol error(s) seen by the simulated agents`);
    if (adminProblems.length > 0) failures.push(`${adminProblems.length} unexpected answer(s) to management API calls`);
    await server.stop();
    running.delete(server);
    if (failures.length === 0 && !opts.keepWork) rmSync(server.work, { recursive: true, force: true });
    if (tree !== projectRoot) rmSync(tree, { recursive: true, force: true });
  }
}

// What checkRuns needs of a simulated agent: its name, and how often it ran each step id.
export type RunCounts = { name: string; runs: ReadonlyMap<string, number> };

// Every step of the deployments ran exactly once, on the agent it was given to, and
// no sim ran anything else. Sets the deploy figures' step checks (and failures).
export function checkRuns(result: Pick<FleetResult, "deploy" | "failures">, views: { steps: Pick<StepView, "id" | "agent" | "status">[] }[], sims: RunCounts[], n: number): void {
  const byName = new Map(sims.map((s) => [s.name, s]));
  const d = result.deploy;
  const steps = views.flatMap((v) => v.steps);
  d.steps = steps.length;
  d.stepStatus = {};
  for (const s of steps) d.stepStatus[s.status] = (d.stepStatus[s.status] ?? 0) + 1;
  d.ranTwice = [];
  d.neverRan = [];
  d.strayRuns = [];
  const known = new Map(steps.map((s) => [s.id, s.agent]));
  for (const s of steps) {
    const runs = byName.get(s.agent)?.runs.get(s.id) ?? 0;
    if (runs === 0) d.neverRan.push(`${s.id} (${s.agent}, ${s.status})`);
    if (runs > 1) d.ranTwice.push(`${s.id} (${s.agent}: ${runs} times)`);
  }
  for (const sim of sims) {
    for (const [stepId, runs] of sim.runs) {
      const owner = known.get(stepId);
      if (owner !== sim.name) d.strayRuns.push(`${stepId} run ${runs}× by ${sim.name}, ${owner ? `given to ${owner}` : "in no deployment"}`);
    }
  }
  const failures = result.failures.filter((f) => !f.startsWith("deploy:"));
  if (d.steps !== n) failures.push(`deploy: ${d.steps} steps recorded, ${n} expected (one per agent)`);
  const notOk = steps.filter((s) => s.status !== "succeeded").length;
  if (notOk > 0) failures.push(`deploy: ${notOk} step(s) did not succeed: ${JSON.stringify(d.stepStatus)}`);
  if (d.ranTwice.length > 0) failures.push(`deploy: ${d.ranTwice.length} step(s) ran more than once`);
  if (d.neverRan.length > 0) failures.push(`deploy: ${d.neverRan.length} step(s) never ran`);
  if (d.strayRuns.length > 0) failures.push(`deploy: ${d.strayRuns.length} step run(s) on the wrong agent or in no deployment`);
  result.failures.splice(0, result.failures.length, ...failures);
}
