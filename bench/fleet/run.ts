// `npm run bench:fleet -- --agents N` (default 200): N simulated agents against a
// real local server (fleet.ts), then a table of the figures beside the goals of
// issue 10. Exits 1 when the protocol broke (a protocol error, an unexpected answer,
// a step run twice or never, an agent that never came back), never merely because a
// goal was missed: those figures say MISSED.
//
//   --agents N   how many simulated agents (default 200)
//   --keep       keep the server's work dir (state and logs) even when all went well
//   --ramp S     start the agents evenly over S seconds instead of all at once
//   --live-tree  run the server from the working tree instead of a frozen copy of it
//                (wrangler dev restarts the Worker, dropping every socket, whenever a
//                source file changes: edits during the run would disturb the figures)
import { parseArgs } from "node:util";
import { runFleet, stopRunningServers, type FleetResult, type Stats } from "./fleet.ts";
import type { Problem } from "./sim-agent.ts";

const GOAL_N = 1000; // the goals are stated for a fleet of this size
const GOALS = { deployMs: 5_000, reconnectMs: 10_000, staleAt10s: 0, rssBytes: 1024 ** 3 };

const { values } = parseArgs({ options: { agents: { type: "string", default: "200" }, keep: { type: "boolean", default: false }, ramp: { type: "string", default: "0" }, "live-tree": { type: "boolean", default: false } }, strict: true });
const N = Number(values.agents);
const RAMP_S = Number(values.ramp);
if (!Number.isInteger(N) || N < 1 || !(RAMP_S >= 0)) {
  console.error(`--agents must be a positive integer and --ramp a number of seconds ≥ 0; got ${JSON.stringify(values.agents)}, ${JSON.stringify(values.ramp)}`);
  process.exit(2);
}

const s = (ms: number | null) => (ms === null ? "n/a" : `${(ms / 1000).toFixed(2)} s`);
const mb = (b: number) => `${Math.round(b / 1024 / 1024)} MB`;
const spread = (st: Stats | null, f = s) => (st === null ? "n/a" : `${f(st.p50)} / ${f(st.p90)} / ${f(st.max)}`);
const verdict = (ok: boolean | null) => (ok === null ? "MISSED (no figure)" : ok ? "met" : "MISSED");

function table(r: FleetResult): string {
  const rows: [string, string, string, string][] = [];
  const row = (what: string, figure: string, goal = "", v = "") => rows.push([what, figure, goal, v]);
  const d = r.deploy;
  const rs = r.restart;

  const ramp = r.rampMs > 0 ? ` (started over ${s(r.rampMs)})` : " (started at once)";
  row(`1. all ${r.n} online${ramp}: start → API online + every hello answered`, s(r.online.ms), "(none given)");
  row("   start → every sim's hello answered", s(r.online.socketsMs));
  row("   per agent, start → its welcome (p50 / p90 / max)", spread(r.online.firstWelcome));

  const oneDeployment = d.tagRefusal === null && d.deployments.length === 1;
  row(`2. one deployment to all ${r.n}: deployments needed`, String(d.deployments.length), "1", oneDeployment ? "met" : `MISSED (${d.tagRefusal ?? "see below"})`);
  if (d.tagRefusal === null) row("   POST /api/v1/deployments → 201", s(d.firstPostMs));
  else {
    row("   the refused POST (targets.tags) → its answer", s(d.firstPostMs));
    const posts = d.deployments.map((x) => x.postMs);
    row(`   fallback: ${d.deployments.length} POSTs at once → 201 (slowest / sum)`, `${s(Math.max(...posts))} / ${s(posts.reduce((a, b) => a + b, 0))}`);
  }
  row("   first POST → every step's result recorded (API)", s(d.ms), `≤ ${s(GOALS.deployMs)}`, verdict(d.ms === null ? null : d.ms <= GOALS.deployMs));
  row("   first POST → last sim heard its reports acked", s(d.lastAckMs));
  const ranOnce = d.steps - d.ranTwice.length - d.neverRan.length;
  row("   steps recorded / succeeded / ran exactly once", `${d.steps} / ${d.stepStatus.succeeded ?? 0} / ${ranOnce}`, `${r.n} / ${r.n} / ${r.n}`, ranOnce === r.n && d.steps === r.n && d.strayRuns.length === 0 ? "ok" : "FAILED");

  row("3. server kill -9 → it answers again", s(rs.killToBackMs));
  row(`   server answers → all ${r.n} back online (API + sockets)`, s(rs.ms), `≤ ${s(GOALS.reconnectMs)}`, verdict(rs.ms === null ? null : rs.ms <= GOALS.reconnectMs));
  row("   per agent, first reconnect after server answers (p50 / p90 / max)", spread(rs.firstReconnect));
  row("   connect attempts per agent, kill → reconnected (p50 / p90 / max)", spread(rs.attemptsPerAgent, String));
  // A herd: more than half the fleet dialling within one second (meaningless for a handful of agents).
  const herd = r.n >= 20 && rs.peakAttemptsPerSec.afterBack > r.n / 2;
  row(
    "   peak WebSocket connects/s: after server back | while down",
    `${rs.peakAttemptsPerSec.afterBack} | ${rs.peakAttemptsPerSec.whileDown}`,
    "no herd",
    r.n < 20 ? "n/a (N < 20)" : herd ? `HERD (> ${r.n / 2}/s)` : `no herd (≤ ${Math.round((100 * rs.peakAttemptsPerSec.afterBack) / r.n)}% of N in any second)`,
  );
  row("   peak command pulls/s: after server back | while down", `${rs.peakPullsPerSec.afterBack} | ${rs.peakPullsPerSec.whileDown}`);
  const st = rs.staleAt10s;
  row(
    `   ${st === null ? "10" : (st.atMs / 1000).toFixed(1)} s after: API online but sim socket NOT connected`,
    st === null ? "n/a" : `${st.onlineButNotConnected} (API ${st.apiOnline} online, ${st.simConnected} sockets)`,
    String(GOALS.staleAt10s),
    verdict(st === null ? null : st.onlineButNotConnected <= GOALS.staleAt10s),
  );
  row("   results still all succeeded after the restart", rs.resultsKept === null ? "n/a" : rs.resultsKept ? "yes" : "NO");

  row("   sockets dropped outside the kill (not 1000/1001)", String(r.unexpectedCloses), "0", r.unexpectedCloses === 0 ? "ok" : "UNEXPECTED");

  const m = r.memory;
  row(`4. server RSS peak, workerd (${m.workerdProcesses} process(es))`, mb(m.peakWorkerdBytes), `≤ ${mb(GOALS.rssBytes)}`, verdict(m.samples === 0 ? null : m.peakWorkerdBytes <= GOALS.rssBytes));
  row("   of which the largest workerd process", mb(m.peakLargestWorkerdBytes));
  row("   workerd idle (before any agent) → per agent at peak", `${mb(m.idleWorkerdBytes)} → ${((m.peakWorkerdBytes - m.idleWorkerdBytes) / r.n / 1024 / 1024).toFixed(2)} MB/agent`);
  row("   server RSS peak, whole tree (launcher + wrangler + workerd)", mb(m.peakTreeBytes));
  const f = r.fds;
  const near = f.workerdLimit !== null && f.peakWorkerd >= 0.9 * f.workerdLimit;
  row("   open fds peak: busiest workerd process | this bench process", `${f.peakWorkerd} | ${f.peakBench}`, `< limit ${f.workerdLimit ?? "?"}`, near ? "AT THE LIMIT (see server.log: EMFILE)" : "ok");

  const head: [string, string, string, string] = ["measurement", "figure", "goal", "verdict"];
  const w = [0, 1, 2, 3].map((i) => Math.max(head[i].length, ...rows.map((x) => x[i].length)));
  const line = (x: string[]) => x.map((c, i) => c.padEnd(w[i])).join("  ").trimEnd();
  return [line(head), line(w.map((n) => "-".repeat(n))), ...rows.map(line)].join("\n");
}

// Problems grouped by kind and message (ids and numbers blurred), with counts.
function problemSummary(problems: Problem[]): string {
  const groups = new Map<string, number>();
  for (const p of problems) {
    const key = `${p.kind.padEnd(9)} ${p.what.replace(/\b(?=[A-Za-z0-9_:-]*\d)[A-Za-z0-9_:-]{12,}\b/g, "<id>").replace(/\d+ s;/g, "N s;").slice(0, 220)}`;
    groups.set(key, (groups.get(key) ?? 0) + 1);
  }
  return [...groups].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `  ${String(n).padStart(6)} × ${k}`).join("\n");
}

// The server runs in its own process group (so it can be stopped as a whole), which a
// terminal's Ctrl-C or a SIGTERM to this process does not reach: stop it, then exit.
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(sig, () => {
    console.error(`${sig}: stopping the server`);
    void stopRunningServers().finally(() => process.exit(130));
  });
}

console.log(`Outpost fleet bench: ${N} simulated agents in one process against a real local server`);
const started = Date.now();
let r: FleetResult;
try {
  r = await runFleet({ agents: N, rampMs: RAMP_S * 1000, keepWork: values.keep, snapshot: !values["live-tree"], log: (l) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${l}`) });
} catch (e) {
  console.error(`bench:fleet failed: ${e instanceof Error ? e.stack : String(e)}`);
  process.exit(1);
}

console.log(`
Outpost fleet bench: N = ${r.n} simulated agents (one Node process, real WebSockets + HTTP, agent back-off),
server under wrangler dev on 127.0.0.1; this process's open-files limit ${r.openFilesLimit ?? "unknown"}; goals are stated for N = ${GOAL_N}.
Setup (not measured against a goal): ${r.n} registration tokens ${s(r.setup.tokensMs)}, ${r.n} registrations ${s(r.setup.registerMs)}.

${table(r)}`);

if (r.restart.series.length > 0) {
  console.log("\nAfter the restart, as sampled (t from the server answering again):");
  console.log("     t   API online   sim sockets   API online w/o socket   socket but API offline");
  for (const x of r.restart.series) {
    console.log(`${s(x.atMs).padStart(8)}   ${String(x.apiOnline).padStart(10)}   ${String(x.simConnected).padStart(11)}   ${String(x.onlineButNotConnected).padStart(21)}   ${String(x.offlineButConnected).padStart(22)}`);
  }
}
if (r.restart.connectsPerSecond.length > 0) {
  console.log("\nWebSocket connect attempts | command pulls per second, from the kill (second 0 = the server answers again):");
  const cells = r.restart.connectsPerSecond.map((x) => `${x.second >= 0 ? "+" : ""}${x.second}s: ${x.connects}|${x.pulls}`);
  for (let i = 0; i < cells.length; i += 8) console.log("  " + cells.slice(i, i + 8).map((c) => c.padEnd(18)).join(""));
}
if (r.cpu.length > 0) {
  console.log("\nCPU seconds per phase (2 cores: at most 2 s per wall second; others' work on this machine not shown), and workerd RSS at its end:");
  console.log("  phase          wall    workerd   rest of server   bench process (sims)   workerd RSS");
  for (const c of r.cpu) {
    console.log(`  ${c.phase.padEnd(12)} ${c.wallS.toFixed(1).padStart(6)} ${c.workerdS.toFixed(1).padStart(10)} ${c.restS.toFixed(1).padStart(16)} ${c.simS.toFixed(1).padStart(22)} ${mb(c.workerdBytesAtEnd).padStart(13)}`);
  }
}
if (r.latency.length > 0) {
  console.log("\nLatencies the simulated agents saw, per phase (requests sent within the phase; p50 / p90 / max):");
  const w = Math.max(...r.latency.map((x) => x.what.length));
  for (const x of r.latency) console.log(`  ${x.phase.padEnd(13)} ${x.what.padEnd(w)}  n=${String(x.stats.n).padStart(5)}  ${spread(x.stats)}`);
}
if (r.deploy.tagRefusal) console.log(`\nOne deployment to all ${r.n} agents was refused: ${r.deploy.tagRefusal}\n  → the goal "one deployment to any number of agents" is NOT met.`);
console.log(`\nAnswers the simulated agents got (route status × count):\n${r.statuses.map(([k, n]) => `  ${String(n).padStart(7)} × ${k}`).join("\n")}`);
if (r.problems.length > 0) console.log(`\nProblems the simulated agents recorded (protocol = contract broken; server = 5xx / 1011 / 4000; transient = network, expected while the server is down):\n${problemSummary(r.problems)}`);
if (r.slowReads.length > 0) console.log(`\nThe bench's own polling reads that took over 10 s: ${r.slowReads.length}, e.g. ${r.slowReads.slice(0, 5).join("; ")}`);
for (const p of r.adminProblems) console.log(`unexpected management API answer: ${p}`);
const list = (what: string, xs: string[]) => xs.length > 0 && console.log(`${what} (${xs.length}): ${xs.slice(0, 10).join("; ")}${xs.length > 10 ? "; …" : ""}`);
list("steps run twice", r.deploy.ranTwice);
list("steps never run", r.deploy.neverRan);
list("stray runs", r.deploy.strayRuns);

if (r.failures.length > 0) {
  console.log(`\nFAILED:\n${r.failures.map((f) => `  - ${f}`).join("\n")}\nserver state and logs kept in ${r.work}`);
  process.exitCode = 1;
} else {
  console.log(`\nProtocol: no errors; every step ran exactly once.${values.keep ? ` Server work dir kept: ${r.work}` : ""}`);
}
