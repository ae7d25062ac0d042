// The monitor process (`outpost-agent run`): writes monitor.pid, forks the
// worker and restarts it with back-off when it dies (full jitter 0.5 s → 30 s,
// reset after a healthy minute). SIGTERM/SIGINT: SIGTERM the worker, SIGKILL it
// after 10 s, remove the pid files, resolve 0. The worker exits by itself when
// the monitor dies (IPC disconnect). A worker exiting with EXIT_REVOKED (the
// server said the agent is revoked, docs/protocol.md §Revoke) is not restarted: the
// monitor removes the pid files and resolves EXIT_REVOKED. At start it makes the
// home private (agent/home.ts) and hands the worker the umask `run` was started
// with, for the steps. An upgraded version's monitor takes over in this process
// (./handover.ts).
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { isLive, processCmdline } from "../proc.ts";
import { Backoff, delayAfterRunMs } from "../backoff.ts";
import { AgentError, EXIT_RESTART, EXIT_REVOKED, REVOKED_MESSAGE, SettingsError } from "../errors.ts";
import { TOKEN_ENV } from "../args.ts";
import { formatUmask, secureHome } from "../home.ts";
import { checkServerUrl } from "../url-policy.ts";
import { WorkerVersions } from "./worker-versions.ts";
import { loadMonitor, MONITOR_HANDOVER_CONTRACT, MONITOR_HANDOVER_CONTRACTS, monitorModuleOf, type MonitorHandover, type MonitorOptions, type RunMonitor } from "./handover.ts";
import { AGENT_VERSION } from "../version.ts";
import { createLogger } from "../log.ts";
import { homePaths, readCredential, readPidFile, readSettings, removePidFile, writePidFile } from "../settings.ts";

const WORKER_ENTRY = fileURLToPath(new URL("../worker/main.ts", import.meta.url));
// This module (in a package: its lib/monitor.mjs), to tell whether a recorded version's
// monitor is this one.
const THIS_MONITOR = fileURLToPath(new URL("./monitor.ts", import.meta.url));
export { MONITOR_HANDOVER_CONTRACTS };
export type { MonitorOptions };
const STOP_GRACE_MS = 10_000;
// V8 flags for a worker run from source (a .ts entry), on top of the monitor's own
// command-line flags (which fork passes on by default). Node strips the TypeScript types
// with swc compiled to WebAssembly; --liftoff-only keeps that on baseline code, never
// recompiled by the optimizing tier, which would hold ~15 MB for the life of the process
// and cost start-up CPU. agent/bin/outpost-agent.mjs sets the same in the monitor. A
// packaged worker gets none: its only WebAssembly is fetch's HTTP parser, and with the
// flag it idled ~2 MB larger, not smaller (bench/idle-agent.ts).
const SOURCE_WORKER_V8_FLAGS: readonly string[] = ["--liftoff-only"];
const workerExecArgv = (entry: string) =>
  entry.endsWith(".ts") ? [...process.execArgv, ...SOURCE_WORKER_V8_FLAGS.filter((f) => !process.execArgv.includes(f))] : process.execArgv;
// A worker that stayed up this long earns a fresh restart back-off.
export const HEALTHY_WORKER_MS = 60_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Whether `pid` is a live process whose command line mentions `marker` (guards against pid reuse).
function isAgentProcess(pid: number, marker: string): boolean {
  if (!isLive(pid)) return false;
  const args = processCmdline(pid);
  return args === null || args.some((a) => a.includes(marker)); // no /proc: trust the pid
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once("exit", () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

// The monitor of the upgraded version recorded in the home, when it is not this one.
async function recordedMonitor(upgrades: WorkerVersions, log: ReturnType<typeof createLogger>): Promise<{ run: RunMonitor; module: string } | null> {
  const module = monitorModuleOf(upgrades.current.worker);
  if (module === null || module === THIS_MONITOR) return null;
  try {
    return { run: await loadMonitor(module), module };
  } catch (e) {
    log.warn(`version ${upgrades.current.version}'s monitor cannot take over; monitor ${AGENT_VERSION} carries on`, e);
    return null;
  }
}

// Resolves the process exit code: 0 after SIGTERM/SIGINT, EXIT_REVOKED when the
// worker was told the agent is revoked. `handover`: a monitor of an earlier version
// hands its running worker over to this one (./handover.ts).
export async function runMonitor(opts: MonitorOptions, handover?: MonitorHandover): Promise<number> {
  const log = createLogger("monitor");
  const paths = homePaths(opts.home);
  if (handover && !MONITOR_HANDOVER_CONTRACTS.includes(handover.contract)) {
    throw new AgentError(`monitor ${AGENT_VERSION} does not accept hand-over contract ${handover.contract}`, { contract: handover.contract });
  }
  // docs/agent-lifecycle.md §Upgrade: the worker this monitor runs (an upgraded version's,
  // once one was found healthy), and the switch under way.
  const upgrades = new WorkerVersions(paths.home, WORKER_ENTRY, log);
  if (!opts.delegated && !handover) {
    const recorded = await recordedMonitor(upgrades, log);
    if (recorded) {
      log.info(`starting the monitor of version ${upgrades.current.version} (${recorded.module}), as ${paths.home}/agent-version.json says`);
      return recorded.run({ ...opts, delegated: true });
    }
  }
  const settings = readSettings(paths.home); // fail fast, before forking, on an unregistered home
  readCredential(paths.home);
  const urlCheck = checkServerUrl(settings.server, { insecure: settings.insecure });
  if (!urlCheck.ok) throw new SettingsError(`server in ${paths.settings}: ${urlCheck.error}`, { path: paths.settings });
  const fixed = secureHome(paths.home);
  if (fixed > 0) log.warn(`made ${fixed} file(s) and folder(s) in ${paths.home} private to this user (an earlier version left them readable by others)`);

  const other = readPidFile(paths.monitorPid);
  if (!handover && other !== null && other !== process.pid && isAgentProcess(other, "outpost-agent")) {
    throw new AgentError(`another monitor (pid ${other}) is running for ${paths.home}`, { pid: other });
  }
  const staleWorker = readPidFile(paths.workerPid);
  // Matched by this home on its command line: a worker from a packaged agent (lib/worker.mjs)
  // or from another version is found as well as one run from source.
  if (!handover && staleWorker !== null && isAgentProcess(staleWorker, paths.home)) {
    log.warn(`a worker of an earlier monitor (pid ${staleWorker}) is still running; waiting for it to exit`);
    const t0 = Date.now();
    while (isLive(staleWorker) && Date.now() - t0 < STOP_GRACE_MS) await sleep(100);
    if (isLive(staleWorker)) process.kill(staleWorker, "SIGKILL");
  }
  writePidFile(paths.monitorPid);

  // A registration token left in the environment has no business in the steps' environment.
  const { [TOKEN_ENV]: _token, ...inherited } = process.env;
  const env = settings.ca ? { ...inherited, NODE_EXTRA_CA_CERTS: settings.ca } : inherited;
  const args = [
    "--home",
    paths.home,
    "--step-umask",
    formatUmask(opts.stepUmask),
    ...(opts.concurrency ? ["--concurrency", String(opts.concurrency)] : []),
    ...(opts.retentionDays !== null ? ["--retention-days", String(opts.retentionDays)] : []),
  ];
  const backoff = new Backoff();
  let child: ChildProcess | null = null;
  let stopping = false;
  let restartTimer: NodeJS.Timeout | null = null;
  let finish: (code: number) => void = () => {};
  const finished = new Promise<number>((resolve) => (finish = resolve));
  let extraEnv: NodeJS.ProcessEnv = {};

  const startWorker = () => {
    restartTimer = null;
    if (stopping) return;
    const entry = upgrades.entry();
    const c = fork(entry, args, { env: { ...env, ...extraEnv }, execArgv: workerExecArgv(entry), stdio: ["ignore", "inherit", "inherit", "ipc"] });
    extraEnv = {};
    log.info(`worker started, pid ${c.pid}${entry === WORKER_ENTRY ? "" : ` (${entry})`}`);
    supervise(c, Date.now());
  };

  const supervise = (c: ChildProcess, startedAt: number) => {
    child = c;
    c.on("error", (e) => log.error(`worker process ${c.pid}`, e));
    upgrades.started(() => {
      c.kill("SIGTERM");
      setTimeout(() => c.exitCode === null && c.signalCode === null && c.kill("SIGKILL"), STOP_GRACE_MS).unref();
    });
    c.on("message", (m) => {
      if (upgrades.message(m)) void handOver(c, startedAt);
    });
    c.on("exit", (code, signal) => {
      if (c.pid) removePidFile(paths.workerPid, c.pid);
      if (stopping) return;
      // A switch to an upgraded version, or its end: the trial worker exited before it
      // was healthy (or was stopped for missing the deadline) — back to the old one.
      const next = upgrades.exited(code, signal);
      if (next) {
        extraEnv = next.env;
        backoff.reset();
        restartTimer = setTimeout(startWorker, 0);
        return;
      }
      if (code === EXIT_REVOKED) {
        // A new worker would be refused the same way: stop, loudly, and let whoever
        // runs the agent (systemd, a shell) see a failure.
        stopping = true;
        removePidFile(paths.monitorPid, process.pid);
        log.error(`${REVOKED_MESSAGE}; worker ${c.pid} stopped and is not restarted; the monitor stops`);
        finish(EXIT_REVOKED);
        return;
      }
      if (code === EXIT_RESTART) {
        // Asked for by the server (docs/agent-lifecycle.md §Restart): a new worker now.
        log.info(`worker ${c.pid} stopped for a restart the server asked for; starting a new one`);
        backoff.reset();
        restartTimer = setTimeout(startWorker, 0);
        return;
      }
      const uptime = Date.now() - startedAt;
      const delay = delayAfterRunMs(backoff, uptime, HEALTHY_WORKER_MS);
      log.warn(`worker ${c.pid} exited (${signal ?? `code ${code}`}) after ${(uptime / 1000).toFixed(1)} s; restarting in ${delay} ms`);
      restartTimer = setTimeout(startWorker, delay);
    });
  };

  // After a healthy switch: the new version's monitor takes this process over, with the
  // worker running. Until it has loaded, this monitor carries on as if nothing happened.
  const handOver = async (c: ChildProcess, startedAt: number) => {
    const recorded = await recordedMonitor(upgrades, log);
    if (!recorded || stopping) return;
    stopping = true; // this monitor starts, restarts and stops nothing from now on
    process.off("SIGTERM", onSigterm);
    process.off("SIGINT", onSigint);
    if (restartTimer) clearTimeout(restartTimer);
    const running = child === c && c.exitCode === null && c.signalCode === null ? c : null;
    for (const event of ["exit", "message", "error"]) child?.removeAllListeners(event);
    log.info(`handing over to the monitor of version ${upgrades.current.version} (${recorded.module})`);
    const taken: MonitorHandover = { contract: MONITOR_HANDOVER_CONTRACT, from: AGENT_VERSION, worker: running, workerStartedAt: startedAt };
    recorded.run({ ...opts, delegated: true }, taken).then(finish, (e: unknown) => {
      log.error(`the monitor of version ${upgrades.current.version} failed to take over; stopping`, e);
      running?.kill("SIGTERM");
      finish(1);
    });
  };

  if (handover) {
    const w = handover.worker;
    log.info(`monitor ${AGENT_VERSION} took over from monitor ${handover.from} (pid ${process.pid})${w ? `, with worker ${w.pid}` : ""}`);
    if (w && w.exitCode === null && w.signalCode === null) supervise(w, handover.workerStartedAt);
    else startWorker();
  } else {
    log.info(`monitor ${AGENT_VERSION} started (pid ${process.pid}, home ${paths.home})`);
    startWorker();
  }

  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal}: stopping the worker`);
    if (restartTimer) clearTimeout(restartTimer);
    const c = child;
    if (c && c.exitCode === null && c.signalCode === null) {
      c.kill("SIGTERM");
      if (!(await waitExit(c, STOP_GRACE_MS))) {
        log.warn(`worker ${c.pid} did not stop within ${STOP_GRACE_MS / 1000} s; SIGKILL`);
        c.kill("SIGKILL");
        await waitExit(c, 5_000);
      }
    }
    if (c?.pid) removePidFile(paths.workerPid, c.pid);
    removePidFile(paths.monitorPid, process.pid);
    log.info("stopped");
    finish(0);
  };
  function onSigterm() {
    void stop("SIGTERM");
  }
  function onSigint() {
    void stop("SIGINT");
  }
  process.on("SIGTERM", onSigterm);
  process.on("SIGINT", onSigint);
  return finished;
}
