// Process checks the real-process tests share.
export { readPidFile as readPid } from "../../agent/settings.ts";

// Running, and not a zombie: this machine's init can be slow to reap orphans.
export { isLive as isRunning } from "../../agent/proc.ts";

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
