// Builds the wire reports the journal's outbox holds. Ids come from `reportIds`,
// so a report regenerated after a crash has the same id and is applied once.
import { report, reportIds, type Report } from "../../schema/agent-api.ts";
import { STEP_REASON_MAX, type FinalStepStatus } from "../../schema/steps.ts";

// outputs: what the step wrote to OUTPOST_OUTPUTS (secrets masked), when it ran.
export type StepOutcome = { status: FinalStepStatus; exitCode: number | null; reason: string | null; outputs?: Record<string, string> };

// The reason of a step the agent must report but has no record of: its journal
// was lost or restored from an older copy, so the step may have run. Never run it.
export const NO_RECORD_REASON = "agent has no record of this step (journal lost)";

export function clipReason(reason: string | null): string | null {
  if (reason === null) return null;
  return reason.length <= STEP_REASON_MAX ? reason : reason.slice(0, STEP_REASON_MAX - 1) + "…";
}

export function startedReport(stepId: string, deploymentId: string, at: number): Report {
  return report.parse({ type: "step-started", id: reportIds.started(stepId), deploymentId, stepId, at });
}

export function finishedReport(stepId: string, deploymentId: string, outcome: StepOutcome, at: number): Report {
  return report.parse({
    type: "step-finished",
    id: reportIds.finished(stepId),
    deploymentId,
    stepId,
    status: outcome.status,
    exitCode: outcome.exitCode,
    reason: clipReason(outcome.reason),
    at,
    ...(outcome.outputs && Object.keys(outcome.outputs).length > 0 ? { outputs: outcome.outputs } : {}),
  });
}
