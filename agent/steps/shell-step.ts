// Shell steps as detached process groups that outlive the worker.
//
// Each step gets <home>/steps/<step>/ with command.sh (the user's command),
// output.log (stdout+stderr appended), pid (the wrapper's pid, = its process
// group) and, once it ended, status (the exit code; see WRAPPER for how it is read
// safely while being written). The worker learns the end from
// the child's exit event (fast path) or, after a restart, by polling the status
// file and the wrapper's liveness. Everything in the step directory is private
// (0700/0600, the worker's umask); only the user's command runs with the umask the
// agent was started with, so what a deployment creates gets ordinary modes.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { isLive, liveProcesses, processEnviron, processesWithEnv, processExists, procStat } from "../proc.ts";
import { AgentError } from "../errors.ts";
import { trace } from "../trace.ts";
import { DIR_MODE, FILE_MODE, formatUmask } from "../home.ts";
import type { StepOutcome } from "../worker/reports.ts";

// Every process the wrapper starts costs a fork and an exec, paid by every step: only
// builtins run on the common path (no mv, no rm unless there is something to remove).
// The status file is written in one small write(2) by a wrapper that exits right after:
// a reader that finds it empty or absent while the wrapper lives waits; one that finds
// the wrapper gone reads it again (reattachShellStep, the runner's recovery).
//
// $1 = step directory, $2 = the command's umask ("" keeps the wrapper's), $3 $4 = the
// Node binary and agent/steps/mask-filter.ts when the step uses secrets (else ""). `$$`
// is the wrapper's pid, which is also its process group id. The umask is set inside
// the subshell, after the wrapper has opened output.log, so the log stays private.
// With secrets the output goes through the mask filter (it reads and deletes `masks`)
// before it reaches output.log, the exit code travels through `rc`, and the files that
// held secrets for the step (command.sh, inputs.json) are removed as it ends.
export const WRAPPER = [
  'd="$1"',
  'echo $$ > "$d/pid"',
  'if [ -n "$3" ]; then',
  '  { ( if [ -n "$2" ]; then umask "$2" || exit 126; fi; exec /bin/sh "$d/command.sh" ) 2>&1 < /dev/null; echo $? > "$d/rc"; } | "$3" "$4" "$d/masks" "$d/outputs" >> "$d/output.log" 2>&1',
  '  c=$(cat "$d/rc" 2>/dev/null); [ -n "$c" ] || c=1',
  '  rm -f "$d/rc" "$d/command.sh"',
  "else",
  '  ( if [ -n "$2" ]; then umask "$2" || exit 126; fi; exec /bin/sh "$d/command.sh" ) >> "$d/output.log" 2>&1 < /dev/null',
  "  c=$?",
  "fi",
  '[ ! -e "$d/inputs.json" ] || rm -f "$d/inputs.json"',
  'echo "$c" > "$d/status"',
].join("\n");

const MASK_FILTER = fileURLToPath(new URL("./mask-filter.ts", import.meta.url));

export const KILL_GRACE_MS = 5_000;
const POLL_MS = 200;

// timedOut: written before a timed-out step's process group is killed, so a worker
// that dies during the kill still leaves the verdict behind (the killed wrapper writes
// no status).
// inputs / masks / outputs: a plug-in step's inputs (JSON, may hold secrets), the secret
// values the mask filter hides (deleted by it at once), the step's OUTPOST_OUTPUTS file.
export type StepPaths = { dir: string; script: string; log: string; status: string; pidFile: string; timedOut: string; inputs: string; masks: string; outputs: string };

// Step ids come from the server: use them as directory names only when plainly safe.
export function stepDirName(stepId: string): string {
  if (/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(stepId)) return stepId;
  return "h-" + createHash("sha256").update(stepId).digest("hex").slice(0, 32);
}

export function stepPaths(stepsDir: string, stepId: string): StepPaths {
  const dir = join(stepsDir, stepDirName(stepId));
  return {
    dir,
    script: join(dir, "command.sh"),
    log: join(dir, "output.log"),
    status: join(dir, "status"),
    pidFile: join(dir, "pid"),
    timedOut: join(dir, "timed-out"),
    inputs: join(dir, "inputs.json"),
    masks: join(dir, "masks"),
    outputs: join(dir, "outputs"),
  };
}

// How a step process ended: its exit code from the status file, or null when
// the wrapper died without writing one (killed).
export type StepEnd = { exitCode: number | null; signal: string | null };

export type StepProcess = { pid: number; paths: StepPaths; ended: Promise<StepEnd> };

export class StepSpawnError extends AgentError {
  constructor(stepId: string, cause: unknown) {
    super(`cannot start step ${stepId}`, { stepId }, { cause });
    this.name = "StepSpawnError";
  }
}

export function readStatus(paths: StepPaths): number | null {
  try {
    const n = Number.parseInt(readFileSync(paths.status, "utf8").trim(), 10);
    return Number.isInteger(n) ? n : null;
  } catch {
    return null;
  }
}

// When the step ended: the status file's mtime (written as the wrapper ends). Null
// without a status file.
export function statusTime(paths: StepPaths): number | null {
  return mtime(paths.status);
}

// When the step was given up on as timed out (its marker's mtime); null if it was not.
export function timedOutAt(paths: StepPaths): number | null {
  return mtime(paths.timedOut);
}

function mtime(path: string): number | null {
  try {
    return Math.floor(statSync(path).mtimeMs);
  } catch {
    return null;
  }
}

export function readStepPid(paths: StepPaths): number | null {
  try {
    const n = Number.parseInt(readFileSync(paths.pidFile, "utf8").trim(), 10);
    return Number.isInteger(n) && n > 1 ? n : null;
  } catch {
    return null;
  }
}

export function logSize(paths: StepPaths): number {
  try {
    return statSync(paths.log).size;
  } catch {
    return 0;
  }
}

// Writes command.sh and clears what an earlier attempt left (status, pid, outputs); the log is appended to.
export function prepareStepDir(paths: StepPaths, command: string): void {
  mkdirSync(paths.dir, { recursive: true, mode: DIR_MODE });
  for (const f of [paths.status, `${paths.status}.tmp`, paths.pidFile, paths.timedOut, paths.outputs, join(paths.dir, "rc")]) rmSync(f, { force: true });
  writeFileSync(paths.script, command.endsWith("\n") ? command : command + "\n", { mode: FILE_MODE }); // run by /bin/sh: no x bit needed
  writeFileSync(paths.log, "", { flag: "a", mode: FILE_MODE });
}

// The files that may hold a secret while a step runs: gone once it has ended, whoever
// ends it (the wrapper, or the worker after a kill the wrapper did not survive).
export function removeSecretFiles(paths: StepPaths, commandHeldSecrets: boolean): void {
  for (const f of [paths.inputs, paths.masks, ...(commandHeldSecrets ? [paths.script] : [])]) rmSync(f, { force: true });
}

// umask: for the user's command only (null: the worker's own). masked: the output goes
// through the mask filter (paths.masks must have been written).
export type StartOptions = { stepId: string; deploymentId: string; paths: StepPaths; cwd: string; env?: NodeJS.ProcessEnv; umask?: number | null; masked?: boolean };

export async function startShellStep(opts: StartOptions): Promise<StepProcess> {
  mkdirSync(opts.cwd, { recursive: true, mode: DIR_MODE });
  const env = { ...(opts.env ?? process.env), OUTPOST_DEPLOYMENT_ID: opts.deploymentId, OUTPOST_STEP_ID: opts.stepId, OUTPOST_OUTPUTS: opts.paths.outputs, OUTPOST_NODE: process.execPath };
  const umask = opts.umask === undefined || opts.umask === null ? "" : formatUmask(opts.umask);
  const mask = opts.masked ? [process.execPath, MASK_FILTER] : ["", ""];
  const child = spawn("/bin/sh", ["-c", WRAPPER, "outpost-step", opts.paths.dir, umask, ...mask], { detached: true, stdio: "ignore", cwd: opts.cwd, env });
  const ended = new Promise<StepEnd>((resolve) => {
    child.once("exit", (code, signal) => {
      trace("exited", opts.stepId);
      const status = readStatus(opts.paths);
      if (status !== null) resolve({ exitCode: status, signal: null });
      else resolve({ exitCode: null, signal: signal ?? `wrapper exited ${code} without a status` });
    });
  });
  await new Promise<void>((resolve, reject) => {
    child.once("spawn", () => resolve());
    child.once("error", (e) => reject(new StepSpawnError(opts.stepId, e)));
  });
  child.unref();
  trace("spawned", opts.stepId);
  return { pid: child.pid!, paths: opts.paths, ended };
}

// Does any live (non-zombie) process remain in the process group?
export function groupExists(pgid: number): boolean {
  if (!processExists(-pgid)) return false;
  const live = liveProcesses();
  return live === null || live.some((p) => p.pgrp === pgid); // no /proc: trust kill(2)
}

const stepEnvEntry = (stepId: string) => `OUTPOST_STEP_ID=${stepId}`;

// Is the wrapper of this step still alive? Guards against pid reuse after a
// reboot by checking the process's environment on Linux.
export function isStepAlive(pid: number, stepId: string): boolean {
  if (!isLive(pid)) return false;
  const environ = processEnviron(pid);
  if (environ === null) return true; // no /proc (or not readable): trust the pid
  return environ.includes(stepEnvEntry(stepId));
}

// The live (non-zombie) processes that carry this step's OUTPOST_STEP_ID: the
// wrapper (pid = pgid) and whatever the step started. Finds a step whose pid was
// never recorded (the worker died between spawn and writing it) and the
// leftovers of a step whose wrapper was killed. Empty without /proc.
export function findStepProcesses(stepId: string): { pid: number; pgid: number }[] {
  return (processesWithEnv(stepEnvEntry(stepId)) ?? []).map((p) => ({ pid: p.pid, pgid: p.pgrp }));
}

// SIGKILLs every process group holding a process of this step (never our own).
export function killStepLeftovers(stepId: string): number[] {
  const own = procStat("self")?.pgrp ?? null;
  const groups = [...new Set(findStepProcesses(stepId).map((p) => p.pgid))].filter((g) => g > 1 && g !== own);
  for (const g of groups) {
    try {
      process.kill(-g, "SIGKILL");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ESRCH") throw e;
    }
  }
  return groups;
}

// Watches a step started by an earlier worker: polls its status file and liveness.
export function reattachShellStep(paths: StepPaths, pid: number, stepId: string): StepProcess {
  const ended = new Promise<StepEnd>((resolve) => {
    const tick = () => {
      const status = readStatus(paths);
      if (status !== null) return resolve({ exitCode: status, signal: null });
      if (!isStepAlive(pid, stepId)) {
        const late = readStatus(paths);
        return resolve(late !== null ? { exitCode: late, signal: null } : { exitCode: null, signal: "wrapper gone without a status" });
      }
      setTimeout(tick, POLL_MS);
    };
    tick();
  });
  return { pid, paths, ended };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// SIGTERM to the whole process group, SIGKILL after the grace period.
export async function killProcessGroup(pgid: number, graceMs = KILL_GRACE_MS): Promise<void> {
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pgid, sig);
    } catch {
      /* already gone */
    }
  };
  signal("SIGTERM");
  const t0 = Date.now();
  while (groupExists(pgid) && Date.now() - t0 < graceMs) await sleep(50);
  if (!groupExists(pgid)) return;
  signal("SIGKILL");
  const t1 = Date.now();
  while (groupExists(pgid) && Date.now() - t1 < 2_000) await sleep(20);
}

export function outcomeFromEnd(end: StepEnd): StepOutcome {
  if (end.exitCode === 0) return { status: "succeeded", exitCode: 0, reason: null };
  if (end.exitCode !== null) {
    const sig = end.exitCode > 128 && end.exitCode < 160 ? ` (killed by signal ${end.exitCode - 128})` : "";
    return { status: "failed", exitCode: end.exitCode, reason: `exit code ${end.exitCode}${sig}` };
  }
  return { status: "failed", exitCode: null, reason: `killed before recording an exit status (${end.signal ?? "unknown"})` };
}

export const CANCELED_OUTCOME: StepOutcome = { status: "canceled", exitCode: null, reason: "canceled: the deployment was canceled; the step's process group was stopped" };

// Waits for the step's end; past the deadline its process group is killed and the step
// fails with reason "timeout"; on `cancel` it is stopped the same way and ends canceled.
export async function waitForStep(proc: StepProcess, deadline: number | null, timeoutSeconds: number | null, cancel?: AbortSignal): Promise<StepOutcome> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    if (deadline !== null) timer = setTimeout(() => resolve("timeout"), Math.max(0, deadline - Date.now()));
  });
  const canceled = new Promise<"cancel">((resolve) => {
    if (cancel?.aborted) resolve("cancel");
    cancel?.addEventListener("abort", () => resolve("cancel"), { once: true });
  });
  const first = await Promise.race([proc.ended, timedOut, canceled]);
  clearTimeout(timer);
  if (first === "cancel") {
    await killProcessGroup(proc.pid);
    await proc.ended;
    return CANCELED_OUTCOME;
  }
  if (first !== "timeout") return outcomeFromEnd(first);
  writeFileSync(proc.paths.timedOut, `${timeoutSeconds}\n`, { mode: FILE_MODE });
  await killProcessGroup(proc.pid);
  await proc.ended;
  return timeoutOutcome(timeoutSeconds);
}

export function timeoutOutcome(timeoutSeconds: number | null): StepOutcome {
  return { status: "failed", exitCode: null, reason: `timeout: still running after ${timeoutSeconds} s, process group killed` };
}
