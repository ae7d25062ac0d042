// A step's output on disk is capped like the server's copy of it
// (LIMITS.logBytesPerStep): a step printing without end must not fill the agent's
// disk. The wrapper appends with O_APPEND, so output.log can be cut back at any
// moment: later writes land at the new end.
import { statSync, truncateSync } from "node:fs";
import { LIMITS } from "../../schema/limits.ts";

// For tests only: lowers the cap (never raises it past the server's), so a test
// need not write 1 GiB. Not a setting: the server keeps no more than its own cap.
export const OUTPUT_CAP_TEST_ENV = "OUTPOST_AGENT_TEST_OUTPUT_CAP_BYTES";

export function outputCapBytes(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[OUTPUT_CAP_TEST_ENV];
  if (raw === undefined || raw === "") return LIMITS.logBytesPerStep;
  const n = Number(raw);
  return Number.isInteger(n) && n > 0 ? Math.min(n, LIMITS.logBytesPerStep) : LIMITS.logBytesPerStep;
}

export const OUTPUT_CAP_BYTES = outputCapBytes();

// Cuts the file back to `cap` bytes if it grew past it. Returns how many bytes were
// cut (what the step writes between the size check and the cut is cut uncounted).
export function capOutput(path: string, cap: number): number {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return 0;
    throw e;
  }
  if (size <= cap) return 0;
  truncateSync(path, cap);
  return size - cap;
}

export function truncationNote(cap: number, dropped: number): string {
  return `output truncated: only the first ${cap} bytes kept, ${dropped} more discarded`;
}
