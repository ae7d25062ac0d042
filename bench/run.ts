// `npm run bench`: every figure of the speed-and-scale goals (issue 10) beside its goal,
// one section after another on this machine's local server. BENCH_ONLY=latency,throughput,
// logs,hol,idle,silent runs some of them; each also runs alone (`node bench/<file>.ts`).
// The fleet figures are `npm run bench:fleet -- --agents N` (bench/fleet/run.ts).
import { rmSync } from "node:fs";
import { TestServer } from "../test/support/local-server.ts";
import { runDeployLatency } from "./deploy-latency.ts";
import { measureHeadOfLine } from "./head-of-line.ts";
import { formatIdleAgent, IDLE_AGENT_NOTES, measureIdleAgent } from "./idle-agent.ts";
import { measureLedgerThroughput, throughputLine } from "./ledger-throughput.ts";
import { measureLogThroughput } from "./log-throughput.ts";
import { measureSilentDeath, silentDeathTable } from "./silent-death.ts";

const MiB = 1024 * 1024;
const SECTIONS = ["latency", "throughput", "logs", "hol", "idle", "silent"] as const;
type Section = (typeof SECTIONS)[number];
const only = new Set((process.env.BENCH_ONLY ?? SECTIONS.join(",")).split(",").map((s) => s.trim()));
const unknown = [...only].filter((s) => !SECTIONS.includes(s as Section));
if (unknown.length > 0) throw new Error(`BENCH_ONLY: unknown section(s) ${unknown.join(", ")}; known: ${SECTIONS.join(", ")}`);
const idleMs = Number(process.env.BENCH_IDLE_MS ?? 60_000);

const heading = (title: string) => console.log(`\n=== ${title} ${"=".repeat(Math.max(0, 76 - title.length))}`);

// One server for the sections that share one (the test hook is on for the ledger throughput).
async function withServer<T>(fn: (server: TestServer) => Promise<T>): Promise<T> {
  const server = new TestServer();
  process.env.OUTPOST_TEST_HOOKS = "1";
  try {
    await server.start();
  } finally {
    delete process.env.OUTPOST_TEST_HOOKS;
  }
  let failed = false;
  try {
    return await fn(server);
  } catch (e) {
    failed = true;
    throw e;
  } finally {
    await server.stop();
    if (failed) console.error(`logs kept in ${server.work}`);
    else rmSync(server.work, { recursive: true, force: true });
  }
}

const run = async (section: Section, title: string, fn: () => Promise<void>) => {
  if (!only.has(section)) return;
  heading(title);
  await fn();
};

await withServer(async (server) => {
  await run("latency", "1. Latency: request → step result recorded (goal p50 ≤ 20 ms, p99 ≤ 60 ms)", async () => {
    await runDeployLatency(server, Number(process.env.BENCH_STEPS ?? 200));
  });
  await run("throughput", "5. Throughput: commands through one agent's ledger (goal ≥ 5,000/s)", async () => {
    await measureLedgerThroughput(server, 500); // warm-up
    console.log(throughputLine(await measureLedgerThroughput(server, Number(process.env.BENCH_COMMANDS ?? 10_000))));
  });
  await run("logs", "4. Logs: a step writing 100 MB, lossless (goal ≥ 50 MB/s)", async () => {
    await measureLogThroughput(server, { bytes: 100 * MiB, runs: Number(process.env.BENCH_LOG_RUNS ?? 3) });
  });
  await run("hol", "7. No head-of-line blocking: a no-op step while a 16 MB log uploads (goal ≤ 2× idle)", async () => {
    await measureHeadOfLine(server, { samples: Number(process.env.BENCH_HOL_SAMPLES ?? 20), logBytes: 16 * MiB });
  });
  await run("idle", `3. Idle agent: monitor + worker after ${Math.round(idleMs / 1000)} s idle (goal ≤ 100 MB RSS together)`, async () => {
    for (const packaged of [false, true]) console.log(formatIdleAgent(await measureIdleAgent({ server, idleMs, packaged })));
    console.log(IDLE_AGENT_NOTES);
  });
});

await run("silent", "6. Silent death: shown offline after the network path stalls (goal ≤ 10 s, ≤ 1 DO wake-up/idle minute)", async () => {
  const rows = [];
  for (const offlineAfterMs of [30_000, 60_000, 9_000]) rows.push(await measureSilentDeath({ offlineAfterMs, idleMs }));
  console.log(silentDeathTable(rows));
  console.log("Both cannot hold at once: the Durable Object must wake to notice silence, so the offline\nthreshold (OUTPOST_OFFLINE_AFTER_MS) trades detection time against wake-ups (docs/scaling.md).");
});
console.log("\nFleet figures (goal 2): npm run bench:fleet -- --agents 1000");
