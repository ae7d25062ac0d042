// `npm run bench:idle`: what an idle agent costs on this machine (issue 10, goal 3).
//
// A real agent — its monitor (the process `outpost-agent run` starts) and the worker
// the monitor forks (<home>/worker.pid) — registered with a real local server and
// online, left alone for 60 s: the resident memory (VmRSS in /proc/<pid>/status) of
// each process and of both together, goal ≤ 100 MB, and the CPU time (utime + stime in
// /proc/<pid>/stat) each used during the idle window — only what the heartbeat needs.
// Beside them, the floor: two bare `node -e "setInterval(()=>{},1e9)"` processes of the
// same Node, measured over the same window.
//
// Both ways an agent runs are measured: from source (agent/bin/outpost-agent.mjs of
// this checkout, Node stripping the TypeScript types) and packaged (a package of this
// checkout built by scripts/agent-package.ts, signed with the server's release key,
// checked and unpacked as the agent does, and run as `node <dir>/bin/outpost-agent.mjs`,
// its home registered by the packaged `register`).
//
// measureIdleAgent() measures one agent; formatIdleAgent() prints its figures (the main
// `npm run bench` may call the first and print otherwise). Linux only (/proc).
//
// Env: BENCH_IDLE_MS (default 60000): the idle window.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { buildAgentPackage, PACKAGE_ENTRY, readSigningKey } from "../scripts/agent-package.ts";
import { RELEASE_KEY_FILE } from "../scripts/local-state.ts";
import { readAgentPackage } from "../schema/agent-package.ts";
import { projectRoot, sleep, startProc, TestServer, waitFor, type Proc } from "../test/support/local-server.ts";

export const IDLE_GOAL_MB = 100;
const DEFAULT_IDLE_MS = 60_000;
const SOURCE_BIN = join(projectRoot, "agent/bin/outpost-agent.mjs");
const FLOOR_SCRIPT = "setInterval(()=>{},1e9)";
const PACKAGE_VERSION = "0.0.0-idle.1";

// One process at the end of the idle window. rssMb = anonMb + fileMb (VmRSS = RssAnon +
// RssFile + RssShmem); ownMb: its private pages (USS: what it alone costs, without the
// node binary's pages every node process shares). cpuMs: utime + stime used during the
// window, lateCpuMs: in its second half (past the after-start GC and compilation: the
// steady idle cost); startCpuMs: used before it (start-up, registration excluded).
export type ProcFigures = { pid: number; rssMb: number; anonMb: number; fileMb: number; ownMb: number; cpuMs: number; lateCpuMs: number; startCpuMs: number };
export type IdleAgentFigures = {
  way: "source" | "packaged";
  agent: string;
  idleMs: number;
  monitor: ProcFigures;
  worker: ProcFigures;
  rssMb: number; // monitor + worker: the goal's figure
  ownMb: number; // monitor + worker, private pages only
  cpuMs: number; // monitor + worker, during the window
  lateCpuMs: number; // monitor + worker, during its second half
  floor: [ProcFigures, ProcFigures]; // two bare node processes, same window
  floorRssMb: number;
  floorCpuMs: number;
  goalMb: number;
};

// ---- /proc -------------------------------------------------------------------------

let ticksPerSecond: number | undefined;
function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    const r = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
    const n = Number(r.stdout?.trim());
    ticksPerSecond = Number.isInteger(n) && n > 0 ? n : 100;
  }
  return ticksPerSecond;
}

// utime + stime of the whole process (all its threads), in ms.
export function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name (field 2) is in parentheses and may hold spaces: count from after it.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]); // field 14
  const stime = Number(fields[12]); // field 15
  return ((utime + stime) * 1000) / clockTicks();
}

export function memoryOf(pid: number): { rssMb: number; anonMb: number; fileMb: number; ownMb: number } {
  const mb = (file: string, key: string) => {
    const text = readFileSync(`/proc/${pid}/${file}`, "utf8");
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text);
    if (!m) throw new Error(`/proc/${pid}/${file} has no ${key}`);
    return Number(m[1]) / 1024;
  };
  return {
    rssMb: mb("status", "VmRSS"),
    anonMb: mb("status", "RssAnon"),
    fileMb: mb("status", "RssFile") + mb("status", "RssShmem"),
    ownMb: mb("smaps_rollup", "Private_Clean") + mb("smaps_rollup", "Private_Dirty"),
  };
}

function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

// ---- the agent ---------------------------------------------------------------------

async function registrationToken(server: TestServer): Promise<string> {
  const tok = await server.api("POST", "/api/v1/registration-tokens", {});
  if (tok.status !== 201) throw new Error(`registration token: ${tok.status} ${tok.text}`);
  return tok.json.token;
}

// Builds this checkout as a package signed with the server's release key, checks it as
// the agent checks one (schema/agent-package.ts) and unpacks it into `dir` — the files at
// their paths, nothing else, as agent/worker/upgrader.ts does.
async function unpackedPackage(server: TestServer, dir: string): Promise<string> {
  const key = await readSigningKey(join(server.stateDir, RELEASE_KEY_FILE));
  const built = await buildAgentPackage({ version: PACKAGE_VERSION, key });
  const pkg = await readAgentPackage(built.bytes, [{ key: key.publicKey, fingerprint: key.fingerprint }]);
  rmSync(dir, { recursive: true, force: true });
  for (const f of pkg.files) {
    const target = resolve(dir, f.path);
    if (relative(dir, target).split(sep).includes("..")) throw new Error(`package entry ${f.path} escapes ${dir}`);
    mkdirSync(dirname(target), { recursive: true, mode: 0o700 });
    writeFileSync(target, f.data, { mode: 0o600 });
  }
  return join(dir, PACKAGE_ENTRY);
}

async function registerWith(bin: string, server: TestServer, name: string, home: string): Promise<void> {
  mkdirSync(home, { recursive: true });
  const p = startProc(process.execPath, [bin, "register", "--server", server.base, "--token", await registrationToken(server), "--name", name, "--home", home], {
    logFile: join(server.work, `agent-${name}.log`),
  });
  const code = await p.exited;
  if (code !== 0) throw new Error(`${bin} register exited ${code}; see ${p.logFile}`);
}

function startFloor(): ChildProcess {
  return spawn(process.execPath, ["-e", FLOOR_SCRIPT], { stdio: "ignore" });
}

function figures(pid: number, cpuAtStart: number, cpuHalfway: number): ProcFigures {
  const cpu = cpuMsOf(pid);
  return { pid, ...memoryOf(pid), cpuMs: cpu - cpuAtStart, lateCpuMs: cpu - cpuHalfway, startCpuMs: cpuAtStart };
}

let runs = 0;

// Starts an agent (from source, or packaged), waits until the server sees it online,
// lets it idle for `idleMs` (default BENCH_IDLE_MS, else 60 s) beside two bare node
// processes, and measures all four. The agent is stopped afterwards; its home and log
// stay in server.work.
export async function measureIdleAgent(opts: { server: TestServer; idleMs?: number; packaged?: boolean }): Promise<IdleAgentFigures> {
  const { server } = opts;
  const idleMs = opts.idleMs ?? positiveInt("BENCH_IDLE_MS", DEFAULT_IDLE_MS);
  const way = opts.packaged ? "packaged" : "source";
  const name = `idle-${way}-${++runs}`;
  const home = join(server.work, "agents", name);
  const bin = opts.packaged ? await unpackedPackage(server, join(server.work, `package-${name}`)) : SOURCE_BIN;
  await registerWith(bin, server, name, home);

  let agent: Proc | undefined;
  const floor: ChildProcess[] = [];
  try {
    agent = startProc(process.execPath, [bin, "run", "--home", home], { logFile: join(server.work, `agent-${name}.log`) });
    await server.waitAgentOnline(name);
    const workerPid = await waitFor(async () => {
      const f = join(home, "worker.pid");
      const pid = existsSync(f) ? Number(readFileSync(f, "utf8").trim()) : NaN;
      return Number.isInteger(pid) && isAlive(pid) ? pid : null;
    }, 10_000, `${home}/worker.pid`);
    const monitorPid = agent.pid;
    floor.push(startFloor(), startFloor());
    await sleep(200); // the bare processes are up (their start-up is not the idle cost)

    const pids = [monitorPid, workerPid, ...floor.map((c) => c.pid!)];
    const cpuAtStart = pids.map(cpuMsOf);
    await sleep(idleMs / 2);
    const cpuHalfway = pids.map(cpuMsOf);
    await sleep(idleMs - idleMs / 2);
    for (const pid of pids) if (!isAlive(pid)) throw new Error(`process ${pid} exited during the idle window; see ${agent.logFile}`);
    const after = readFileSync(join(home, "worker.pid"), "utf8").trim();
    if (Number(after) !== workerPid) throw new Error(`the worker was restarted during the idle window (${workerPid} → ${after}); see ${agent.logFile}`);
    const [monitor, worker, floorA, floorB] = pids.map((pid, i) => figures(pid, cpuAtStart[i], cpuHalfway[i]));
    return {
      way,
      agent: name,
      idleMs,
      monitor,
      worker,
      rssMb: monitor.rssMb + worker.rssMb,
      ownMb: monitor.ownMb + worker.ownMb,
      cpuMs: monitor.cpuMs + worker.cpuMs,
      lateCpuMs: monitor.lateCpuMs + worker.lateCpuMs,
      floor: [floorA, floorB],
      floorRssMb: floorA.rssMb + floorB.rssMb,
      floorCpuMs: floorA.cpuMs + floorB.cpuMs,
      goalMb: IDLE_GOAL_MB,
    };
  } finally {
    for (const c of floor) c.kill("SIGKILL");
    await agent?.stop();
  }
}

// ---- printing ----------------------------------------------------------------------

export function formatIdleAgent(f: IdleAgentFigures): string {
  const perMin = (ms: number) => (ms * 60_000) / f.idleMs;
  const mb = (n: number | undefined) => (n === undefined ? "" : n.toFixed(1)).padStart(7);
  const ms = (n: number) => n.toFixed(0).padStart(7);
  const lateMin = (ms: number) => (ms * 60_000) / (f.idleMs - f.idleMs / 2);
  const row = (label: string, p: { rssMb: number; anonMb?: number; fileMb?: number; ownMb?: number }, cpu: number, late: number, extra = "") =>
    `${label.padEnd(30)}${mb(p.rssMb)}${mb(p.anonMb)}${mb(p.fileMb)}${mb(p.ownMb)}   ${ms(cpu)}${ms(perMin(cpu))}${ms(lateMin(late))}${extra}`;
  const verdict = f.rssMb <= f.goalMb ? "met" : `NOT met, ${(f.rssMb - f.goalMb).toFixed(1)} MB over`;
  const floorOwn = f.floor[0].ownMb + f.floor[1].ownMb;
  return [
    `Idle agent, ${f.way === "source" ? "run from source (agent/bin/outpost-agent.mjs)" : "packaged (bin/outpost-agent.mjs of a built package)"}: online, then idle ${(f.idleMs / 1000).toFixed(0)} s`,
    `${"".padEnd(30)}${"RSS".padStart(7)}${"anon".padStart(7)}${"file".padStart(7)}${"own".padStart(7)}   ${"CPU".padStart(7)}${"/min".padStart(7)}${"late".padStart(7)}   (MB; CPU ms in the window, per minute, per minute in its 2nd half)`,
    row(`monitor (pid ${f.monitor.pid})`, f.monitor, f.monitor.cpuMs, f.monitor.lateCpuMs, `   start-up CPU ${f.monitor.startCpuMs.toFixed(0)} ms`),
    row(`worker (pid ${f.worker.pid})`, f.worker, f.worker.cpuMs, f.worker.lateCpuMs, `   start-up CPU ${f.worker.startCpuMs.toFixed(0)} ms`),
    row("monitor + worker", { rssMb: f.rssMb, ownMb: f.ownMb }, f.cpuMs, f.lateCpuMs, `   goal RSS <= ${f.goalMb} MB: ${verdict}`),
    row("floor: 2 bare node processes", { rssMb: f.floorRssMb, ownMb: floorOwn }, f.floorCpuMs, f.floor[0].lateCpuMs + f.floor[1].lateCpuMs, `   (${f.floor.map((p) => p.rssMb.toFixed(1)).join(" + ")} MB)`),
  ].join("\n");
}

// What the columns mean, printed once under the tables.
export const IDLE_AGENT_NOTES = `RSS = anon + file (VmRSS). file is mostly the node binary's own pages, shared by every
node process but counted in each one's RSS; own = the process's private pages (USS).
late: CPU per minute in the window's second half, past the GC and compilation that
follow a start: what idling costs. One sample each: a process's RSS moves by a few MB
between identical runs, with when GC and the JIT happened to run.`;

function positiveInt(name: string, dflt: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

// ---- standalone ----------------------------------------------------------------------

if (import.meta.main) {
  const server = new TestServer();
  let stopping: Promise<void> | undefined;
  const stopServer = () => (stopping ??= server.stop());
  let interrupted = false;
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(sig, () => {
      interrupted = true;
      console.error(`${sig}: stopping the server (and the agent being measured)`);
      void stopServer().finally(() => process.exit(130));
    });
  }
  try {
    console.log(`Starting a local server (work dir ${server.work})…`);
    await server.start();
    const idleMs = positiveInt("BENCH_IDLE_MS", DEFAULT_IDLE_MS);
    const results: IdleAgentFigures[] = [];
    for (const packaged of [false, true]) {
      console.log(`Measuring an agent ${packaged ? "packaged (building the package first)" : "run from source"}: idle ${idleMs / 1000} s…`);
      results.push(await measureIdleAgent({ server, idleMs, packaged }));
    }
    console.log("\n" + results.map(formatIdleAgent).join("\n\n") + "\n\n" + IDLE_AGENT_NOTES);
    await stopServer();
    rmSync(server.work, { recursive: true, force: true });
  } catch (err) {
    if (interrupted) {
      await stopping;
      process.exit(130);
    }
    console.error(`bench failed: ${err instanceof Error ? err.stack : String(err)}\nlogs kept in ${server.work}`);
    await stopServer();
    process.exitCode = 1;
  }
}
