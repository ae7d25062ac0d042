// Resync on connect (docs/protocol.md §Resync), agent side. `hello` told the
// server the journal's lastSeq and the outbox's report ids; `welcome` answers
// with what the server already applied and which steps' final results it still
// lacks. planResync decides (pure); applyResync does it against the journal.
import type { Logger } from "../log.ts";
import { reportIds, type WelcomeMessage } from "../../schema/agent-api.ts";
import { isActiveStep } from "../../schema/steps.ts";
import type { Journal, StepRow } from "./journal.ts";
import { NO_RECORD_REASON } from "./reports.ts";

// What the journal knows of a step the server expects a result for.
export type StepFact = { state: StepRow["state"]; finishedReportQueued: boolean } | undefined;

export type ResyncPlan = {
  deleteApplied: string[]; // report ids the server applied already (the ack was lost): drop, never re-post
  resend: string[]; // ended steps whose step-finished report left the outbox: rebuild it (same id) and send
  interrupt: string[]; // steps the journal has no record of: report `interrupted`, never run
  unfinished: string[]; // pending or running here: their report comes when they end
  pull: boolean; // the server holds commands after lastSeq
  journalBehind: boolean; // the server saw more acknowledged than the journal holds (journal lost or restored; the pull handles it)
};

export function planResync(
  hello: { lastSeq: number; reports: readonly string[] },
  welcome: Pick<WelcomeMessage, "head" | "acked" | "applied" | "expecting">,
  facts: ReadonlyMap<string, StepFact>,
): ResyncPlan {
  // Only ids this hello named: anything else in `applied` is not ours to judge.
  const named = new Set(hello.reports);
  const deleteApplied = [...new Set(welcome.applied.filter((id) => named.has(id)))];
  const deleted = new Set(deleteApplied);
  const plan: ResyncPlan = {
    deleteApplied,
    resend: [],
    interrupt: [],
    unfinished: [],
    pull: welcome.head > hello.lastSeq,
    journalBehind: welcome.acked > hello.lastSeq,
  };
  for (const stepId of new Set(welcome.expecting)) {
    const fact = facts.get(stepId);
    if (fact === undefined) plan.interrupt.push(stepId);
    else if (isActiveStep(fact.state)) plan.unfinished.push(stepId);
    else if (!fact.finishedReportQueued || deleted.has(reportIds.finished(stepId))) plan.resend.push(stepId);
    // else: its finished report is still queued and will be posted anyway
  }
  return plan;
}

// onSettled: the outbox now holds exactly what the server lacks: post it (it also
// cuts a report back-off short, since the server just answered).
// onLogResend: a step's output is to be uploaded again (from offset 0).
export type ResyncDeps = { journal: Journal; log: Logger; onSettled: () => void; onHead: (head: number) => void; onLogResend: (stepId: string) => void };

export async function applyResync(deps: ResyncDeps, hello: { lastSeq: number; reports: readonly string[] }, welcome: WelcomeMessage): Promise<ResyncPlan> {
  const { journal, log } = deps;
  const facts = await journal.stepFacts([...new Set(welcome.expecting)]);
  const plan = planResync(hello, welcome, facts);
  if (plan.journalBehind) {
    // Nothing to do here: the pull after lastSeq returns those commands with the same
    // `acked`, and the command intake ends them as lost instead of running them.
    log.error(
      `server holds commands up to seq ${welcome.acked} as acknowledged but this journal only up to ${hello.lastSeq}: the journal was lost or restored from an older copy; those commands will be reported interrupted, not run`,
    );
  }
  if (plan.deleteApplied.length > 0) {
    await journal.deleteReports(plan.deleteApplied);
    log.info(`resync: ${plan.deleteApplied.length} reports already applied`);
  }
  let requeued = 0;
  for (const stepId of plan.resend) {
    if (!(await journal.requeueFinishedReport(stepId))) continue;
    requeued++;
    deps.onLogResend(stepId);
  }
  if (requeued > 0) log.info(`resync: re-sending the final result of ${requeued} step(s) the server lacks: ${plan.resend.slice(0, 5).join(", ")}`);
  for (const stepId of plan.interrupt) {
    const r = await journal.interruptUnknownStep(stepId, NO_RECORD_REASON);
    if (r) log.warn(`resync: step ${stepId} (deployment ${r.deploymentId}) is unknown to this journal; reported interrupted, not run`);
    else log.error(`resync: the server expects step ${stepId}, which this journal has no record of, nor of its deployment: it cannot be reported from here (the server's agent-lost policy ends it); it is not run`);
  }
  deps.onSettled();
  deps.onHead(welcome.head);
  return plan;
}
