// The journal's side of the resync (docs/protocol.md §Resync): what it knows of the
// steps the server expects results for, rebuilding a step-finished report the
// server lost, and ending a step the journal has no record of. Kept apart from
// journal.ts so the rules read in one place; journal.ts runs them in its
// serialized operations and transactions.
import { eq, inArray, sql } from "drizzle-orm";
import type { LibSQLDatabase } from "drizzle-orm/libsql";
import { reportIds } from "../../schema/agent-api.ts";
import { journalCommands, journalSteps, outbox } from "../../schema/journal.ts";
import { isActiveStep, type StepStatus } from "../../schema/steps.ts";
import { insertReport, type Tx } from "./journal-tx.ts";
import { finishedReport, type StepOutcome } from "./reports.ts";

export type StepFacts = Map<string, { state: StepStatus; finishedReportQueued: boolean }>;

// Each step's state and whether its step-finished report still waits in the outbox.
// Steps the journal has no record of are absent.
export async function selectStepFacts(db: Pick<LibSQLDatabase, "select">, stepIds: string[]): Promise<StepFacts> {
  if (stepIds.length === 0) return new Map();
  const rows = await db.select({ stepId: journalSteps.stepId, state: journalSteps.state }).from(journalSteps).where(inArray(journalSteps.stepId, stepIds));
  const queued = await db.select({ id: outbox.id }).from(outbox).where(inArray(outbox.id, stepIds.map(reportIds.finished)));
  const q = new Set(queued.map((r) => r.id));
  return new Map(rows.map((r) => [r.stepId, { state: r.state, finishedReportQueued: q.has(reportIds.finished(r.stepId)) }]));
}

// Puts an ended step's step-finished report back in the outbox, rebuilt from the
// journal (same id, same content), unless it is already there, and marks its
// output for upload again from offset 0: a server that lost the result may have
// lost the output too (the server skips the bytes it still holds). False if the
// step has not ended.
export async function requeueFinished(tx: Tx, stepId: string, now: number): Promise<boolean> {
  const row = await tx.select().from(journalSteps).where(eq(journalSteps.stepId, stepId)).get();
  if (!row || isActiveStep(row.state)) return false;
  const outcome: StepOutcome = { status: row.state, exitCode: row.exitCode, reason: row.reason, ...(row.outputs ? { outputs: JSON.parse(row.outputs) as Record<string, string> } : {}) };
  await insertReport(tx, finishedReport(stepId, row.deploymentId, outcome, row.finishedAt ?? now), now);
  await tx.update(journalSteps).set({ logUploaded: 0, logGivenUp: null }).where(eq(journalSteps.stepId, stepId));
  return true;
}

// A step the server expects a result for but the journal has no record of (the
// journal was lost or replaced): recorded and reported `interrupted`, never run.
// The deployment id comes from the step's command if the journal still holds
// it; without it no report can be built and null is returned.
export async function interruptUnknown(tx: Tx, stepId: string, reason: string, now: number): Promise<{ deploymentId: string } | null> {
  if (await tx.select({ s: journalSteps.stepId }).from(journalSteps).where(eq(journalSteps.stepId, stepId)).get()) return null;
  const needle = `"stepId":${JSON.stringify(stepId)}`;
  const cmds = await tx.select().from(journalCommands).where(sql`instr(${journalCommands.body}, ${needle}) > 0`);
  for (const c of cmds) {
    const body = JSON.parse(c.body) as { deploymentId?: unknown; steps?: { stepId?: unknown; position?: unknown }[] };
    const step = body.steps?.find((s) => s.stepId === stepId);
    if (!step || typeof body.deploymentId !== "string") continue;
    const deploymentId = body.deploymentId;
    const position = typeof step.position === "number" ? step.position : 0;
    await tx.insert(journalSteps).values({ stepId, deploymentId, commandSeq: c.seq, position, state: "interrupted", reason, finishedAt: now, logSize: 0 });
    await insertReport(tx, finishedReport(stepId, deploymentId, { status: "interrupted", exitCode: null, reason }, now), now);
    return { deploymentId };
  }
  return null;
}
