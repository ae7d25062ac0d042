// Process checks the real-process tests share.
import { readFileSync } from "node:fs";
export { readPidFile as readPid } from "../../agent/settings.ts";

// Running, and not a zombie: this machine's init can be slow to reap orphans,
// and kill(pid, 0) succeeds on a zombie.
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(")") + 2));
  } catch {
    return false; // gone between the two checks
  }
}

// Kills process groups a test started (steps lead their own groups); ones already gone are skipped.
export function killGroups(pgids: readonly number[]): void {
  for (const g of pgids) {
    if (g <= 1) continue; // never kill(-1): that would signal every process we may signal
    try {
      process.kill(-g, "SIGKILL");
    } catch {
      // already gone
    }
  }
}
