// Pure scheduling decisions: which deployments to start, what a deployment
// does next, and how a step the journal says is running is recovered.
import type { RetryPolicy, StepStatus } from "../../schema/steps.ts";

export type StepLike = { stepId: string; position: number; state: StepStatus };

// Unfinished commands start oldest first, up to `max` running at once.
export function pickCommandsToStart(unfinished: number[], active: ReadonlySet<number>, max: number): number[] {
  const free = Math.max(0, max - active.size);
  return [...unfinished].sort((a, b) => a - b).filter((seq) => !active.has(seq)).slice(0, free);
}

export type NextStep<S extends StepLike> =
  | { kind: "start"; step: S } // pending: run it
  | { kind: "resume"; step: S } // running per the journal (the worker restarted): recover it
  | { kind: "end"; skip: S[]; reason: string; failed: boolean }; // the deployment is over on this agent

// The results after which this agent runs no more of the deployment's steps.
const BREAKS: ReadonlySet<StepStatus> = new Set<StepStatus>(["failed", "interrupted", "canceled"]);

// Steps run sequentially in position order; once one fails (or is interrupted
// or canceled), the later ones are skipped.
export function nextStep<S extends StepLike>(steps: S[]): NextStep<S> {
  const ordered = [...steps].sort((a, b) => a.position - b.position);
  for (let i = 0; i < ordered.length; i++) {
    const s = ordered[i];
    if (s.state === "succeeded" || s.state === "skipped") continue;
    if (BREAKS.has(s.state)) {
      return { kind: "end", skip: ordered.slice(i + 1).filter((x) => x.state === "pending"), reason: `an earlier step ${s.state}`, failed: true };
    }
    if (s.state === "running") return { kind: "resume", step: s };
    return { kind: "start", step: s };
  }
  return { kind: "end", skip: [], reason: "", failed: false };
}

export type Recovery = "finish-from-status" | "finish-timed-out" | "reattach" | "rerun" | "interrupt";

// A step the journal says is running, found by a (re)started worker. `timedOut`: an
// earlier worker gave it up as timed out and began killing it (then died): it failed
// by timeout, whatever its killed process left behind — never re-run nor "interrupted".
export function recoverRunningStep(r: { statusFileExists: boolean; processAlive: boolean; timedOut: boolean; retry: RetryPolicy }): Recovery {
  if (r.timedOut && !r.processAlive) return "finish-timed-out";
  if (r.statusFileExists) return "finish-from-status";
  if (r.processAlive) return "reattach"; // a timed-out one is killed at once: its deadline has passed
  return r.retry === "safe" ? "rerun" : "interrupt";
}

// When a step with a timeout must be over (absolute epoch ms), counted from its start.
export function stepDeadline(startedAt: number | null, timeoutSeconds: number | null, now: number): number | null {
  if (timeoutSeconds === null) return null;
  return (startedAt ?? now) + timeoutSeconds * 1000;
}
