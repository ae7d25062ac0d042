// Where a deployment's time goes (`npm run bench`): the bench's own marks (POST sent,
// 201, result seen in D1) and the agent's trace marks (agent/trace.ts) of the same
// deployment, placed on one clock (epoch ms; one machine). Deployments run one at a
// time, so a deployment's agent marks are the first of each kind inside its window.
import type { TraceEvent } from "../agent/trace.ts";

export type Window = { postAt: number; acceptedAt: number; seenAt: number };
export type Mark = { at: number; event: TraceEvent };
export type Phases = Record<PhaseName, number>;

// In order along the path; together they add up to POST sent → result seen.
export const PHASES = [
  ["notify", "POST sent → agent notified (D1 insert, ledger, WebSocket)"],
  ["pull", "notified → commands pulled (HTTPS, auth, ledger)"],
  ["store", "pulled → stored in the journal"],
  ["launch", "stored → step spawned (journal, step folder, spawn)"],
  ["run", "spawned → step exit seen (wrapper + `true`)"],
  ["finish", "exit → result journaled"],
  ["hold", "journaled → reports posted"],
  ["report", "reports posted → acknowledged (auth, ledger, D1)"],
  ["visible", "acknowledged → seen by GET (projection + polling)"],
] as const;
export type PhaseName = (typeof PHASES)[number][0];

const ORDER: TraceEvent[] = ["notified", "pulled", "stored", "spawned", "exited", "journaled", "report-sent", "report-acked"];

export function parseTrace(text: string): Mark[] {
  const marks: Mark[] = [];
  for (const line of text.split("\n")) {
    const [at, event] = line.split(" ");
    if (!at || !ORDER.includes(event as TraceEvent)) continue;
    marks.push({ at: Number(at), event: event as TraceEvent });
  }
  return marks.sort((a, b) => a.at - b.at);
}

// Null when a mark is missing or out of order (the deployment is left out of the figures).
export function phasesOf(w: Window, marks: Mark[]): Phases | null {
  const t: number[] = [w.postAt];
  for (const event of ORDER) {
    const m = marks.find((x) => x.event === event && x.at >= t[t.length - 1] && x.at <= w.seenAt);
    if (!m) return null;
    t.push(m.at);
  }
  t.push(w.seenAt);
  const d = (i: number) => t[i + 1] - t[i];
  return { notify: d(0), pull: d(1), store: d(2), launch: d(3), run: d(4), finish: d(5), hold: d(6), report: d(7), visible: d(8) };
}
