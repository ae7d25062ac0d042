// Timing marks for the breakdown `npm run bench` prints (bench/latency-breakdown.ts):
// with OUTPOST_AGENT_TRACE=<file>, each mark appends `<epoch ms> <event> <id>` to the
// file (epoch ms with µs digits, comparable across processes on one machine). Unset —
// always, outside the bench — a mark costs one comparison.
import { appendFileSync } from "node:fs";

export const TRACE_ENV = "OUTPOST_AGENT_TRACE";
const file = process.env[TRACE_ENV] || null;

export type TraceEvent = "notified" | "pulled" | "stored" | "spawned" | "exited" | "journaled" | "report-sent" | "report-acked";

export function trace(event: TraceEvent, id: string | number = ""): void {
  if (file === null) return;
  appendFileSync(file, `${(performance.timeOrigin + performance.now()).toFixed(3)} ${event} ${id}\n`);
}
