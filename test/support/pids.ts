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
