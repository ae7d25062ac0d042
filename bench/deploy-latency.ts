// `npm run bench`: how long a one-step deployment takes end to end on this
// machine, beside the floor that no implementation could beat here.
//
//   deploy latency: POST /api/v1/deployments sent → the step's terminal status
//     readable from D1 through GET /api/v1/deployments/:id, for single no-op
//     steps (`true`) run one at a time on one local agent.
//   floor: a raw `ws` round trip over 127.0.0.1, and spawning `/bin/sh -c true`
//     until it exits; a deployment needs at least a few of the first and one of
//     the second.
//
// Env: BENCH_STEPS (default 200), BENCH_POLL_MS (default 5).
import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import { WebSocket, WebSocketServer } from "ws";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { TRACE_ENV } from "../agent/trace.ts";
import { TestServer } from "../test/support/local-server.ts";
import { parseTrace, PHASES, phasesOf, type Window } from "./latency-breakdown.ts";

const STEPS = positiveInt("BENCH_STEPS", 200);
const POLL_MS = positiveInt("BENCH_POLL_MS", 5);
const WARMUP = 5;
const WS_ROUND_TRIPS = 1000;
const SPAWNS = 200;
const AGENT = "bench";
const TERMINAL = new Set(["succeeded", "failed", "interrupted", "skipped", "canceled"]);

function positiveInt(name: string, dflt: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Nearest-rank percentile of an ascending array.
function pct(sorted: number[], p: number): number {
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
}

type Stats = { n: number; p50: number; p90: number; p99: number; max: number };
function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  return { n: s.length, p50: pct(s, 50), p90: pct(s, 90), p99: pct(s, 99), max: s[s.length - 1] };
}

// --- floor ------------------------------------------------------------------------

async function wsRoundTrips(n: number): Promise<number[]> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise<void>((resolve, reject) => { wss.once("listening", resolve); wss.once("error", reject); });
  wss.on("connection", (sock) => sock.on("message", (data, isBinary) => sock.send(data, { binary: isBinary })));
  const ws = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
  try {
    await new Promise<void>((resolve, reject) => { ws.once("open", resolve); ws.once("error", reject); });
    const once = () => new Promise<number>((resolve, reject) => {
      const t0 = performance.now();
      ws.once("message", () => resolve(performance.now() - t0));
      ws.send('{"type":"commands","head":42}', (err) => { if (err) reject(err); });
    });
    for (let i = 0; i < 50; i++) await once(); // warm-up, not counted
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(await once());
    return out;
  } finally {
    ws.terminate();
    await new Promise<void>((resolve, reject) => wss.close((err) => (err ? reject(err) : resolve())));
  }
}

async function spawnTimes(n: number): Promise<number[]> {
  const once = () => new Promise<number>((resolve, reject) => {
    const t0 = performance.now();
    const c = spawn("/bin/sh", ["-c", "true"], { stdio: "ignore" });
    c.once("error", reject);
    c.once("exit", (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`sh exited ${code}`))));
  });
  for (let i = 0; i < 10; i++) await once();
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await once());
  return out;
}

// --- deploy latency -------------------------------------------------------------------

// total: POST sent → terminal status seen; post: POST sent → 201; run: the step's
// own startedAt → finishedAt as the agent recorded them (same machine, same clock).
type Sample = { total: number; post: number; run: number; window: Window };
const epoch = () => performance.timeOrigin + performance.now();

async function deployOnce(server: TestServer, i: number): Promise<Sample> {
  const t0 = performance.now();
  const postAt = epoch();
  const r = await server.api("POST", "/api/v1/deployments", {
    name: `bench-${i}`, agents: [AGENT], steps: [{ name: "noop", type: "shell", command: "true" }],
  });
  const post = performance.now() - t0;
  const acceptedAt = epoch();
  if (r.status !== 201) throw new Error(`POST /api/v1/deployments: ${r.status} ${r.text}`);
  const id: string = r.json.id;
  for (;;) {
    const g = await server.api("GET", `/api/v1/deployments/${id}`);
    if (g.status !== 200) throw new Error(`GET /api/v1/deployments/${id}: ${g.status} ${g.text}`);
    const step = g.json.steps[0];
    if (step && TERMINAL.has(step.status)) {
      const total = performance.now() - t0;
      const seenAt = epoch();
      if (step.status !== "succeeded") throw new Error(`deployment ${id}: step ${step.status} (exit ${step.exitCode}, ${step.reason})`);
      return { total, post, run: Date.parse(step.finishedAt) - Date.parse(step.startedAt), window: { postAt, acceptedAt, seenAt } };
    }
    if (performance.now() - t0 > 60_000) throw new Error(`deployment ${id} not finished after 60 s (step ${step?.status})`);
    await sleep(POLL_MS);
  }
}

// --- report -------------------------------------------------------------------------

function table(rows: [string, Stats][]) {
  const f = (ms: number) => (ms < 10 ? ms.toFixed(2) : ms.toFixed(1)).padStart(9);
  const w = Math.max(...rows.map(([l]) => l.length));
  const lines = [`${"".padEnd(w)}      n ${["p50", "p90", "p99", "max"].map((h) => h.padStart(9)).join("")}   (ms)`];
  for (const [label, s] of rows) lines.push(`${label.padEnd(w)} ${String(s.n).padStart(6)} ${f(s.p50)}${f(s.p90)}${f(s.p99)}${f(s.max)}`);
  return lines.join("\n");
}

// --- the section -------------------------------------------------------------------------

// Starts its own agent on `server`, measures, prints, stops the agent.
export async function runDeployLatency(server: TestServer, steps = STEPS): Promise<{ p50: number; p99: number }> {
  const home = await server.registerAgent(AGENT);
  const traceFile = join(server.work, "agent-trace.txt");
  process.env[TRACE_ENV] = traceFile; // the agent's timing marks, for the breakdown
  const agent = server.startAgent(AGENT, home);
  delete process.env[TRACE_ENV];
  try {
    await server.waitAgentOnline(AGENT);
    console.log("Measuring the floor: ws round trips and /bin/sh spawns…");
    const wsStats = stats(await wsRoundTrips(WS_ROUND_TRIPS));
    const spawnStats = stats(await spawnTimes(SPAWNS));

    console.log(`Warm-up: ${WARMUP} deployments (not counted)…`);
    for (let i = 0; i < WARMUP; i++) await deployOnce(server, -1 - i);

    console.log(`Deploying ${steps} single no-op steps one at a time…`);
    const samples: Sample[] = [];
    for (let i = 0; i < steps; i++) {
      samples.push(await deployOnce(server, i));
      if ((i + 1) % 50 === 0) console.log(`  ${i + 1}/${steps}`);
    }

    const marks = parseTrace(readFileSync(traceFile, "utf8"));
    const broken = samples.map((s) => phasesOf(s.window, marks)).filter((p) => p !== null);
    const totals = stats(samples.map((s) => s.total));
    const goal = (label: string, value: number, max: number) => `${label} ${value.toFixed(1)} ms (goal ≤ ${max} ms: ${value <= max ? "met" : "MISSED"})`;

    console.log(`
Outpost deploy latency: ${steps} sequential one-step deployments (\`true\`) to 1 local agent, server under wrangler dev

${table([
  ["POST /deployments -> step result in D1", totals],
  ["  of which POST -> 201", stats(samples.map((s) => s.post))],
  ["  of which step start -> end (agent)", stats(samples.map((s) => s.run))],
  ["floor: raw ws round trip, 127.0.0.1", wsStats],
  ["floor: spawn /bin/sh -c true -> exit", spawnStats],
])}

${goal("p50", totals.p50, 20)}, ${goal("p99", totals.p99, 60)}

Where the time goes (${broken.length} of ${samples.length} deployments with every mark; agent marks from ${TRACE_ENV}):
${broken.length === 0 ? "(no deployment had every mark: see the trace file)" : table(PHASES.map(([name, what]) => [`${name.padEnd(8)} ${what}`, stats(broken.map((p) => p[name]))]))}
Medians do not add up exactly to the total's median. Also: POST → 201 (the API's answer,
in parallel with the path above) p50 ${stats(samples.map((s) => s.post)).p50.toFixed(1)} ms.

The result is detected by polling GET /api/v1/deployments/:id every ${POLL_MS} ms, so each
deployment figure includes up to ~${POLL_MS} ms of polling delay (plus the GET itself).`);
    return { p50: totals.p50, p99: totals.p99 };
  } finally {
    await agent.stop();
  }
}

if (import.meta.main) {
  const server = new TestServer();
  let failed = false;
  try {
    console.log(`Starting a local server (work dir ${server.work})…`);
    await server.start();
    await runDeployLatency(server);
  } catch (err) {
    failed = true;
    console.error(`bench failed: ${err instanceof Error ? err.stack : String(err)}\nlogs kept in ${server.work}`);
  } finally {
    await server.stop();
    if (!failed) rmSync(server.work, { recursive: true, force: true });
  }
  process.exitCode = failed ? 1 : 0;
}
