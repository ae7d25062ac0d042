// Which journal rows the retention period may remove (docs: agent/README.md,
// "Retention"): a command whose work is over on this agent and fully delivered —
// the command done, every step ended before the cutoff, no report of its steps
// left in the outbox, every step's output uploaded (or its upload given up). Kept
// apart from journal.ts so the rule reads in one place; journal.ts runs it.
import { and, asc, inArray, sql, type SQL } from "drizzle-orm";
import type { LibSQLDatabase } from "drizzle-orm/libsql";
import { reportIds } from "../../schema/agent-api.ts";
import { canceledDeployments, journalCommands, journalSteps, outbox } from "../../schema/journal.ts";
import { ACTIVE_STEP_STATUSES } from "../../schema/steps.ts";

// Report ids are `<stepId><suffix>` (schema/agent-api.ts reportIds); SQL needs the suffixes.
const STARTED = reportIds.started("");
const FINISHED = reportIds.finished("");

function fullyDelivered(cutoff: number, outputCap: number): SQL {
  return sql`${journalCommands.state} = 'done' and ${journalCommands.receivedAt} < ${cutoff} and not exists (
    select 1 from ${journalSteps} where ${journalSteps.commandSeq} = ${journalCommands.seq} and (
      ${inArray(journalSteps.state, [...ACTIVE_STEP_STATUSES])}
      or ${journalSteps.finishedAt} is null or ${journalSteps.finishedAt} >= ${cutoff}
      or (${journalSteps.logGivenUp} is null and ${journalSteps.logUploaded} < min(coalesce(${journalSteps.logSize}, ${outputCap}), ${outputCap}))
      or exists (select 1 from ${outbox} where ${outbox.id} in (${journalSteps.stepId} || ${STARTED}, ${journalSteps.stepId} || ${FINISHED}))
    ))`;
}

type Db = Pick<LibSQLDatabase, "select" | "delete">;

// deploymentId: of a deploy command's steps (its work folder goes with it); null for a cancel.
export async function selectPrunable(db: Db, cutoff: number, outputCap: number, limit: number): Promise<{ seq: number; stepIds: string[]; deploymentId: string | null }[]> {
  const cmds = await db.select({ seq: journalCommands.seq }).from(journalCommands).where(fullyDelivered(cutoff, outputCap)).orderBy(asc(journalCommands.seq)).limit(limit);
  if (cmds.length === 0) return [];
  const seqs = cmds.map((c) => c.seq);
  const steps = await db
    .select({ seq: journalSteps.commandSeq, stepId: journalSteps.stepId, deploymentId: journalSteps.deploymentId })
    .from(journalSteps)
    .where(inArray(journalSteps.commandSeq, seqs));
  return seqs.map((seq) => {
    const own = steps.filter((s) => s.seq === seq);
    return { seq, stepIds: own.map((s) => s.stepId), deploymentId: own[0]?.deploymentId ?? null };
  });
}

// Deletes those of `seqs` that still qualify (something may have changed since they
// were selected: a resync can put a report back), steps first. Returns the seqs deleted.
export async function deletePrunable(db: Db, seqs: number[], cutoff: number, outputCap: number): Promise<number[]> {
  if (seqs.length === 0) return [];
  const still = await db
    .select({ seq: journalCommands.seq })
    .from(journalCommands)
    .where(and(inArray(journalCommands.seq, seqs), fullyDelivered(cutoff, outputCap)));
  const ok = still.map((r) => r.seq);
  if (ok.length === 0) return [];
  await db.delete(journalSteps).where(inArray(journalSteps.commandSeq, ok));
  await db.delete(canceledDeployments).where(inArray(canceledDeployments.commandSeq, ok));
  await db.delete(journalCommands).where(inArray(journalCommands.seq, ok));
  return ok;
}
