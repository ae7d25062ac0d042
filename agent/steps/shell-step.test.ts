// The shell step runner with real /bin/sh processes: docs/protocol.md §Steps outlive the worker.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  findStepProcesses, groupExists, isStepAlive, KILL_GRACE_MS, killProcessGroup, killStepLeftovers, outcomeFromEnd, prepareStepDir, readStatus, readStepPid,
  reattachShellStep, startShellStep, stepDirName, stepPaths, waitForStep,
} from "./shell-step.ts";

let dir: string;
const started: number[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "outpost-steps-"));
});
afterEach(async () => {
  for (const pid of started.splice(0)) {
    try { process.kill(-pid, "SIGKILL"); } catch { /* gone */ }
  }
  rmSync(dir, { recursive: true, force: true });
});

async function run(stepId: string, command: string) {
  const paths = stepPaths(join(dir, "steps"), stepId);
  prepareStepDir(paths, command);
  const proc = await startShellStep({ stepId, deploymentId: "dep-1", paths, cwd: join(dir, "work") });
  started.push(proc.pid);
  return proc;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// Alive and not a zombie (orphaned zombies wait for init to reap them).
const alive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(")") + 2));
  } catch {
    return false;
  }
};

describe("shell step", () => {
  it("captures stdout and stderr, sets the env and cwd, records exit 0", async () => {
    const proc = await run("s1", 'echo out; echo err >&2; echo "$OUTPOST_DEPLOYMENT_ID $OUTPOST_STEP_ID"; pwd');
    const outcome = await waitForStep(proc, null, null);
    expect(outcome).toEqual({ status: "succeeded", exitCode: 0, reason: null });
    expect(readFileSync(proc.paths.log, "utf8")).toBe(`out\nerr\ndep-1 s1\n${join(dir, "work")}\n`);
    expect(readStatus(proc.paths)).toBe(0);
    expect(existsSync(`${proc.paths.status}.tmp`)).toBe(false);
    expect(readStepPid(proc.paths)).toBe(proc.pid);
  });

  it("runs in its own process group", async () => {
    const proc = await run("pg", "sleep 5");
    expect(groupExists(proc.pid)).toBe(true);
    expect(proc.pid).not.toBe(process.pid);
    await killProcessGroup(proc.pid, 1000);
  });

  it("reports a non-zero exit code as failed", async () => {
    const proc = await run("s2", "echo nope >&2; exit 7");
    expect(await waitForStep(proc, null, null)).toMatchObject({ status: "failed", exitCode: 7 });
    expect(readFileSync(proc.paths.log, "utf8")).toBe("nope\n");
  });

  it("kills the whole process group on timeout, grandchildren included", async () => {
    const proc = await run("slow", `sleep 60 & echo $! > "${dir}/grandchild"; echo started; wait`);
    const t0 = Date.now();
    const outcome = await waitForStep(proc, Date.now() + 500, 1);
    expect(outcome.status).toBe("failed");
    expect(outcome.exitCode).toBeNull();
    expect(outcome.reason).toMatch(/timeout/);
    // Not a speed claim: under 4 s means SIGTERM ended the group; the SIGKILL path
    // would first wait out the 5 s grace (KILL_GRACE_MS).
    expect(Date.now() - t0).toBeLessThan(KILL_GRACE_MS - 1_000);
    const grandchild = Number(readFileSync(join(dir, "grandchild"), "utf8"));
    expect(grandchild).toBeGreaterThan(1);
    expect(alive(grandchild)).toBe(false);
    expect(groupExists(proc.pid)).toBe(false);
    expect(readFileSync(proc.paths.log, "utf8")).toBe("started\n");
    // The verdict was written down before the kill: a worker dying now would still know.
    expect(existsSync(proc.paths.timedOut)).toBe(true);
  });

  it("SIGKILLs a group that ignores SIGTERM after the grace period", async () => {
    const proc = await run("stubborn", "trap '' TERM; echo ready; while true; do sleep 0.1; done");
    while (!readFileSync(proc.paths.log, "utf8").includes("ready")) await sleep(20);
    const t0 = Date.now();
    await killProcessGroup(proc.pid, 700);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(650);
    expect(groupExists(proc.pid)).toBe(false);
  });

  it("re-attaches to a step by pid and learns its end from the status file", async () => {
    const proc = await run("long", "sleep 0.6; exit 3");
    expect(isStepAlive(proc.pid, "long")).toBe(true);
    expect(isStepAlive(proc.pid, "some-other-step")).toBe(false);
    const again = reattachShellStep(proc.paths, proc.pid, "long");
    expect(await again.ended).toEqual({ exitCode: 3, signal: null });
  });

  it("notices a re-attached step whose wrapper was killed without a status", async () => {
    const proc = await run("killed", "sleep 30");
    await sleep(100);
    const watch = reattachShellStep(proc.paths, proc.pid, "killed");
    process.kill(-proc.pid, "SIGKILL");
    const end = await watch.ended;
    expect(end.exitCode).toBeNull();
    expect(outcomeFromEnd(end).status).toBe("failed");
  });

  it("does not take a zombie (dead, not yet reaped) for a live step", async () => {
    // `exec sleep` replaces the shell, so nobody reaps the background child: it stays a zombie
    const { spawn } = await import("node:child_process");
    const parent = spawn("/bin/sh", ["-c", "sleep 0.1 & echo $!; exec sleep 5"], { detached: true, stdio: ["ignore", "pipe", "ignore"], env: { ...process.env, OUTPOST_STEP_ID: "z" } });
    started.push(parent.pid!);
    const zombie = await new Promise<number>((resolve) => parent.stdout!.once("data", (d) => resolve(Number(String(d).trim()))));
    expect(isStepAlive(zombie, "z")).toBe(true);
    await sleep(400);
    expect(() => process.kill(zombie, 0)).not.toThrow(); // still in the process table
    expect(isStepAlive(zombie, "z")).toBe(false);
  });

  // docs/protocol.md §Steps outlive the worker
  it("kills the whole process group on timeout after a re-attach too", async () => {
    const proc = await run("re-timeout", `sleep 60 & echo $! > "${dir}/gc"; echo started; wait`);
    while (!existsSync(join(dir, "gc"))) await sleep(20);
    const again = reattachShellStep(proc.paths, proc.pid, "re-timeout"); // as a restarted worker would
    const outcome = await waitForStep(again, Date.now() + 300, 1);
    expect(outcome).toMatchObject({ status: "failed", exitCode: null, reason: expect.stringMatching(/timeout/) });
    expect(alive(Number(readFileSync(join(dir, "gc"), "utf8")))).toBe(false);
    expect(groupExists(proc.pid)).toBe(false);
  });

  // docs/protocol.md §Steps outlive the worker
  it("is not fooled by pid reuse, and finds its processes by step id", async () => {
    const { spawn } = await import("node:child_process");
    const stranger = spawn("sleep", ["5"], { detached: true, stdio: "ignore" }); // a live pid that is not the step
    started.push(stranger.pid!);
    const proc = await run("findme", "sleep 5");
    expect(isStepAlive(stranger.pid!, "findme")).toBe(false);
    const found = findStepProcesses("findme");
    expect(found.find((p) => p.pid === p.pgid)?.pid).toBe(proc.pid); // the wrapper, even without a pid on record
    expect(found.every((p) => p.pgid === proc.pid)).toBe(true);
    expect(findStepProcesses("no-such-step")).toEqual([]);
  });

  // docs/protocol.md §Steps outlive the worker
  it("kills what a killed wrapper left running", async () => {
    const proc = await run("orphaned", `sleep 60 & echo $! > "${dir}/left"; wait`);
    while (!existsSync(join(dir, "left"))) await sleep(20);
    process.kill(proc.pid, "SIGKILL"); // the wrapper only: its children live on
    const left = Number(readFileSync(join(dir, "left"), "utf8"));
    await sleep(100);
    expect(alive(left)).toBe(true);
    expect(killStepLeftovers("orphaned")).toEqual([proc.pid]);
    await sleep(100);
    expect(alive(left)).toBe(false);
  });

  it("runs the command with the umask it is given while the step's own files stay private", async () => {
    const paths = stepPaths(join(dir, "steps"), "um");
    const workerUmask = process.umask(0o077); // as the worker runs
    let proc;
    try {
      prepareStepDir(paths, "umask; touch made");
      proc = await startShellStep({ stepId: "um", deploymentId: "dep-1", paths, cwd: join(dir, "work"), umask: 0o022 });
      started.push(proc.pid);
    } finally {
      process.umask(workerUmask);
    }
    expect(await waitForStep(proc, null, null)).toMatchObject({ status: "succeeded" });
    expect(readFileSync(paths.log, "utf8")).toBe("0022\n");
    const mode = (p: string) => statSync(p).mode & 0o777;
    expect(mode(join(dir, "work", "made"))).toBe(0o644);
    expect(mode(paths.dir)).toBe(0o700);
    for (const f of [paths.script, paths.log, paths.pidFile, paths.status]) expect(mode(f), f).toBe(0o600);
  });

  it("names step directories safely", () => {
    expect(stepDirName("abc-123_x.y")).toBe("abc-123_x.y");
    for (const id of ["../etc", "a/b", "..", ".hidden", "x".repeat(150)]) {
      expect(stepDirName(id)).toMatch(/^h-[0-9a-f]{32}$/);
    }
  });
});
