// Carries the ledger's projection outbox into D1 (projection.ts), page by page. A page
// D1 refused stays in the outbox with its error and the alarm retries it with backoff,
// so an agent's acknowledgement never waits on D1. docs/protocol.md §Projection.
import type { Ledger } from "./ledger.ts";
import { projectJobs } from "../d1/projection.ts";
import { projectionBackoffMs } from "./rules.ts";

export type ProjectionDrain = ReturnType<typeof openProjectionDrain>;

export function openProjectionDrain(deps: {
  ledger: Ledger;
  db: D1Database;
  retryNoLaterThan: (at: number) => Promise<void>;
  // Deployments with later waves whose command on this agent is settled by what was just projected.
  onSettled: (deploymentIds: string[]) => void;
  now: () => number;
}) {
  const { ledger, db, retryNoLaterThan, onSettled, now } = deps;
  let draining: Promise<void> | null = null;
  let drainAgain = false;

  // Returns false when D1 refused: the rows stay, with the error, for the alarm to retry.
  const projectOutbox = async (): Promise<boolean> => {
    const agentId = ledger.agentId();
    if (!agentId) return true;
    for (;;) {
      const rows = ledger.outbox();
      if (rows.length === 0) return true;
      const ids = rows.map((r) => r.order);
      try {
        await projectJobs(db, agentId, rows.map((r) => r.job), now());
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        console.error(`AgentChannel ${agentId}: projecting ${ids.length} job(s) to D1 failed (will retry):`, e);
        ledger.markProjectionFailed(ids, message);
        await retryNoLaterThan(now() + projectionBackoffMs(ledger.outboxStats().maxAttempts));
        return false;
      }
      ledger.markProjected(ids);
      const ended = new Set(rows.flatMap((r) => (r.job.kind === "agent-lost" ? [r.job.deploymentId] : r.job.kind === "report" && r.job.report.type === "step-finished" ? [r.job.report.deploymentId] : [])));
      const settled = ledger.coordinatedSettled([...ended]);
      if (settled.length > 0) onSettled(settled);
    }
  };

  return {
    // One projection loop at a time; reports arriving meanwhile ride along.
    drain(): Promise<void> {
      if (draining) {
        drainAgain = true;
        return draining;
      }
      draining = (async () => {
        try {
          do {
            drainAgain = false;
            if (!(await projectOutbox())) break;
          } while (drainAgain);
        } finally {
          draining = null;
        }
      })();
      return draining;
    },
  };
}
