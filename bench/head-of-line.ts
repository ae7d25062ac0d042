// Goal 7 (issue 10): no head-of-line blocking. Results, acknowledgements, pulls and
// heartbeats must not queue behind bulk log transfers.
//
//   measureHeadOfLine(server, opts): one local agent with concurrency ≥ 2. The no-op
//   step latency — POST /api/v1/deployments sent → the step's result readable through
//   GET /api/v1/deployments/:id (as bench/deploy-latency.ts measures it) — first idle,
//   then while another deployment's step on the same agent uploads a 16 MiB log (it
//   `cat`s a file of random bytes the bench wrote beforehand, so that what competes with
//   the no-op is the log transfer, not a generator), in two cases:
//     - "ended": the big step writes its output and ends at once, so its log drains
//       after its end while its final report waits for it (the case issue 10 saw: the
//       no-op's result waited behind the big log);
//     - "running": the big step stays running (`sleep`) while its log uploads, so only
//       connections, the server and the CPU are shared.
//   The no-op is posted as soon as the server holds the first bytes of the big log.
//   Each loaded sample says whether the big log was still incomplete when the no-op's
//   result was seen (the no-op really ran during the transfer). Goal: each loaded p50
//   ≤ 2× the idle p50.
//
// Standalone: `node bench/head-of-line.ts` (env BENCH_HOL_SAMPLES, default 20 per case;
// BENCH_HOL_LOG_BYTES, default 16 MiB; BENCH_POLL_MS, default 5).
import { randomBytes } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { TestServer } from "../test/support/local-server.ts";
import { deployShell, positiveInt, readLog, sleep, startBenchAgent, waitLogHeld, type BenchAgent } from "./log-throughput.ts";

const MiB = 1024 * 1024;
const TERMINAL = new Set(["succeeded", "failed", "interrupted", "skipped", "canceled"]);

type Stats = { n: number; p50: number; p90: number; max: number };
function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const pct = (p: number) => s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)];
  return { n: s.length, p50: pct(50), p90: pct(90), max: s[s.length - 1] };
}

// Where a no-op's time went (ms, same machine and clock): POST sent → the step started
// on the agent (dispatch, pull, spawn); → its end reported to the server (the report's
// trip, held while it waits in the agent's outbox); → its result seen through the API
// (projection into D1 and polling).
type Phases = { toStart: number; toReported: number; toSeen: number };
type NoOp = { ms: number; phases: Phases };

// POST → the no-op step's terminal status seen; ms, and its phases.
async function noOp(server: TestServer, agent: string, i: number, pollMs: number): Promise<NoOp> {
  const t0 = performance.now();
  const wall0 = Date.now();
  const r = await server.api("POST", "/api/v1/deployments", { name: `hol-noop-${i}`, agents: [agent], steps: [{ name: "noop", type: "shell", command: "true" }] });
  if (r.status !== 201) throw new Error(`POST /api/v1/deployments: ${r.status} ${r.text}`);
  for (;;) {
    const g = await server.api("GET", `/api/v1/deployments/${r.json.id}`);
    const step = g.json?.steps?.[0];
    if (step && TERMINAL.has(step.status)) {
      const ms = performance.now() - t0;
      if (step.status !== "succeeded") throw new Error(`no-op ${r.json.id}: ${step.status} (${step.reason})`);
      const started = Date.parse(step.startedAt) - wall0;
      const reported = Date.parse(step.reportedAt) - wall0;
      return { ms, phases: { toStart: started, toReported: reported - started, toSeen: ms - reported } };
    }
    if (performance.now() - t0 > 120_000) throw new Error(`no-op ${r.json.id} not finished after 120 s`);
    await sleep(pollMs);
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
function phaseMedians(runs: NoOp[]): Phases {
  return { toStart: median(runs.map((r) => r.phases.toStart)), toReported: median(runs.map((r) => r.phases.toReported)), toSeen: median(runs.map((r) => r.phases.toSeen)) };
}
const showPhases = (p: Phases) => `[medians: start ${p.toStart.toFixed(0)}, reported +${p.toReported.toFixed(0)}, seen +${p.toSeen.toFixed(0)} ms]`;

export type LoadedCase = { name: "ended" | "running"; loaded: Stats; ratio: number; overlapped: number; phases: Phases };
export type HeadOfLineResult = { idle: Stats; idlePhases: Phases; cases: LoadedCase[]; worstRatio: number; samples: number; logBytes: number };
export type HeadOfLineOptions = { samples?: number; logBytes?: number; pollMs?: number; agent?: BenchAgent; print?: boolean; cases?: LoadedCase["name"][] };

// `samples` no-ops, each while a big step's log uploads; how many really overlapped it.
async function loadedSamples(server: TestServer, agent: string, name: LoadedCase["name"], samples: number, logBytes: number, pollMs: number) {
  const latencies: NoOp[] = [];
  let overlapped = 0;
  const file = join(server.work, "hol-big.bin");
  writeFileSync(file, randomBytes(logBytes));
  const command = name === "ended" ? `cat ${file}` : `cat ${file}; sleep 5`;
  for (let i = 0; i < samples; i++) {
    const t0 = performance.now();
    const big = await deployShell(server, agent, `hol-big-${name}-${i}`, command);
    // Wait for the transfer to be under way: the server holds some bytes.
    for (;;) {
      const s = await readLog(server, big.dep, big.stepId);
      if (s.size > 0) break;
      if (performance.now() - t0 > 60_000) throw new Error(`no byte of ${big.stepId}'s log after 60 s`);
      await sleep(1);
    }
    latencies.push(await noOp(server, agent, i, pollMs));
    const after = await readLog(server, big.dep, big.stepId);
    if (after.size < logBytes) overlapped++;
    await waitLogHeld(server, big.dep, big.stepId, logBytes, t0);
    await server.waitDeployment(big.dep, 120_000);
  }
  return { latencies, overlapped };
}

export async function measureHeadOfLine(server: TestServer, opts: HeadOfLineOptions = {}): Promise<HeadOfLineResult> {
  const samples = opts.samples ?? 20;
  const logBytes = opts.logBytes ?? 16 * MiB;
  const pollMs = opts.pollMs ?? 5;
  const print = opts.print ?? true;
  const agent = opts.agent ?? (await startBenchAgent(server, "hol-bench", 4));
  try {
    for (let i = 0; i < 5; i++) await noOp(server, agent.name, -1 - i, pollMs); // warm-up
    const idleSamples: NoOp[] = [];
    for (let i = 0; i < samples; i++) idleSamples.push(await noOp(server, agent.name, i, pollMs));
    const idle = stats(idleSamples.map((x) => x.ms));
    const cases: LoadedCase[] = [];
    for (const name of opts.cases ?? (["ended", "running"] as const)) {
      const { latencies, overlapped } = await loadedSamples(server, agent.name, name, samples, logBytes, pollMs);
      const loaded = stats(latencies.map((x) => x.ms));
      cases.push({ name, loaded, ratio: loaded.p50 / idle.p50, overlapped, phases: phaseMedians(latencies) });
    }
    const result: HeadOfLineResult = { idle, idlePhases: phaseMedians(idleSamples), cases, worstRatio: Math.max(...cases.map((c) => c.ratio)), samples, logBytes };
    if (print) {
      const f = (s: Stats) => `p50 ${s.p50.toFixed(1).padStart(7)} ms, p90 ${s.p90.toFixed(1).padStart(7)} ms, max ${s.max.toFixed(1).padStart(7)} ms (n=${s.n})`;
      const mib = (logBytes / MiB).toFixed(0);
      const label = { ended: `another step's ${mib} MiB log uploads after its end`, running: `another step's ${mib} MiB log uploads while it runs` };
      const lines = [
        `Head-of-line: no-op step latency (POST → result readable) on 1 local agent running up to ${opts.agent ? "its configured number of" : "4"} deployments at once`,
        `  idle:${" ".repeat(47)}${f(idle)} ${showPhases(result.idlePhases)}`,
        ...cases.map((c) => `  while ${label[c.name]}: ${f(c.loaded)} ${showPhases(c.phases)}  = ${c.ratio.toFixed(2)}× idle (${c.overlapped}/${samples} during the transfer)`),
        `  goal: loaded p50 ≤ 2× idle p50: ${result.worstRatio <= 2 ? "met" : "NOT met"} (worst ${result.worstRatio.toFixed(2)}×)`,
      ];
      console.log(lines.join("\n"));
    }
    return result;
  } finally {
    if (!opts.agent) await agent.proc.stop();
  }
}

if (import.meta.main) {
  const server = new TestServer();
  let failed = false;
  try {
    console.log(`Starting a local server (work dir ${server.work})…`);
    await server.start();
    await measureHeadOfLine(server, {
      samples: positiveInt("BENCH_HOL_SAMPLES", 20),
      logBytes: positiveInt("BENCH_HOL_LOG_BYTES", 16 * MiB),
      pollMs: positiveInt("BENCH_POLL_MS", 5),
    });
  } catch (e) {
    failed = true;
    console.error(`bench failed: ${e instanceof Error ? e.stack : String(e)}\nlogs kept in ${server.work}`);
  } finally {
    await server.stop();
    if (!failed && !process.env.BENCH_KEEP) rmSync(server.work, { recursive: true, force: true });
    else console.log(`logs kept in ${server.work}`);
  }
  process.exitCode = failed ? 1 : 0;
}
