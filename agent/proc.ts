// Process facts from kill(2) and Linux /proc, shared by the monitor and the
// step runner: the one place that reads /proc. Orphaned zombies linger on some machines until init reaps them,
// and kill(pid, 0) succeeds on a zombie, so liveness also reads the state letter.
import { readdirSync, readFileSync } from "node:fs";

export type ProcStat = { pid: number; state: string; pgrp: number };

// kill(pid, 0): EPERM means it exists but is not ours to signal. A negative pid asks about a process group.
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

// /proc/<pid>/stat is "pid (comm) state ppid pgrp …"; comm may hold spaces and
// parentheses, so fields are counted from the last ")". Null without /proc or once gone.
export function procStat(pid: number | "self"): ProcStat | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { pid: Number.parseInt(stat, 10), state: rest[0], pgrp: Number(rest[2]) };
  } catch {
    return null;
  }
}

const isDead = (state: string) => state === "Z" || state === "X";

// Exists and is not a zombie waiting to be reaped (without /proc: kill(2)'s word).
export function isLive(pid: number): boolean {
  if (!processExists(pid)) return false;
  const stat = procStat(pid);
  return stat === null || !isDead(stat.state);
}

// Every live (non-zombie) process /proc lists; null when there is no /proc.
export function liveProcesses(): ProcStat[] | null {
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return null;
  }
  const out: ProcStat[] = [];
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const stat = procStat(Number(e)); // null: exited meanwhile
    if (stat && !isDead(stat.state)) out.push(stat);
  }
  return out;
}

// /proc/<pid>/cmdline: the process's arguments. Null without /proc, once gone, or
// when not ours to read (a kernel thread's is empty: []).
export function processCmdline(pid: number): string[] | null {
  return readNulSeparated(`/proc/${pid}/cmdline`, "utf8");
}

// /proc/<pid>/environ: the process's environment as "NAME=value" entries, as it was
// at exec. Null without /proc, once gone, or when not ours to read.
export function processEnviron(pid: number): string[] | null {
  return readNulSeparated(`/proc/${pid}/environ`, "latin1");
}

// The live (non-zombie) processes whose environment holds exactly the entry
// `entry` ("NAME=value"). Processes that exit meanwhile, or whose environment is
// not ours to read, are left out; null when there is no /proc.
export function processesWithEnv(entry: string): ProcStat[] | null {
  const live = liveProcesses();
  if (live === null) return null;
  return live.filter((p) => processEnviron(p.pid)?.includes(entry) ?? false);
}

function readNulSeparated(path: string, encoding: BufferEncoding): string[] | null {
  let text: string;
  try {
    text = readFileSync(path, encoding);
  } catch {
    return null;
  }
  const parts = text.split("\0");
  if (parts.at(-1) === "") parts.pop(); // each entry ends with a NUL
  return parts;
}
