// The D1 side of a deployment's coordination (docs/api.md §Rollout, §Cancel): what its
// current wave shows, moving to the next wave, skipping the waves after a failed one,
// and the cancel. Every write is guarded so that repeating it changes nothing.
import { sql } from "drizzle-orm";
import { ACTIVE_STEP_STATUSES, DEPLOYMENT_STATUSES, FINAL_DEPLOYMENT_STATUSES, SERVER_REASONS } from "../schema/steps.ts";
import { prepared, sqlList } from "./db.ts";
import { deploymentStatements } from "./projection.ts";

const ACTIVE = sql.raw(sqlList(ACTIVE_STEP_STATUSES));
const OPEN = sql.raw(sqlList(DEPLOYMENT_STATUSES.filter((s) => !(FINAL_DEPLOYMENT_STATUSES as readonly string[]).includes(s))));
export const CANCELED_REASON = "canceled";

const one = (id: string) => sql`(SELECT ${id})`;

// What D1 shows of a deployment's current wave.
export type RolloutState = {
  open: boolean; // queued or running
  canceled: boolean;
  waves: number;
  currentWave: number;
  stopOnFailure: boolean;
  activeInWave: number; // steps of the current wave still pending or running
  failedInWave: number; // steps of the current wave that ended other than succeeded/skipped (or late after agent-lost)
};

export async function rolloutState(db: D1Database, deploymentId: string): Promise<RolloutState | null> {
  const row = await prepared(
    db,
    sql`SELECT d.status IN ${OPEN} AS open, d.canceled_at IS NOT NULL AS canceled, d.waves, d.current_wave AS currentWave,
               COALESCE(json_extract(d.rollout, '$.stopOnFailure'), 0) AS stopOnFailure,
               (SELECT COUNT(*) FROM deployment_steps s JOIN deployment_targets t ON t.deployment_id = s.deployment_id AND t.agent_id = s.agent_id
                 WHERE s.deployment_id = d.id AND t.wave = d.current_wave AND s.status IN ${ACTIVE}) AS activeInWave,
               (SELECT COUNT(*) FROM deployment_steps s JOIN deployment_targets t ON t.deployment_id = s.deployment_id AND t.agent_id = s.agent_id
                 WHERE s.deployment_id = d.id AND t.wave = d.current_wave
                   AND (s.status NOT IN ('succeeded', 'skipped') OR s.reason LIKE ${SERVER_REASONS.agentLost + "%"})) AS failedInWave
          FROM deployments d WHERE d.id = ${deploymentId}`,
  ).first<{ open: number; canceled: number; waves: number; currentWave: number; stopOnFailure: number; activeInWave: number; failedInWave: number }>();
  if (!row) return null;
  return { ...row, open: row.open === 1, canceled: row.canceled === 1, stopOnFailure: row.stopOnFailure === 1 };
}

// Moves on from wave `from` only (a repeated or racing call changes nothing).
export async function advanceWave(db: D1Database, deploymentId: string, from: number, now: number): Promise<boolean> {
  const r = await prepared(
    db,
    sql`UPDATE deployments SET current_wave = ${from + 1}, updated_at = ${now}
         WHERE id = ${deploymentId} AND current_wave = ${from} AND waves > ${from} AND canceled_at IS NULL AND status IN ${OPEN}`,
  ).run();
  return r.meta.changes > 0;
}

// After a failed wave with stopOnFailure: the later waves' steps (never dispatched) end
// `skipped`, and the deployment ends with them.
export async function skipLaterWaves(db: D1Database, deploymentId: string, after: number, reason: string, now: number): Promise<void> {
  await db.batch(
    [
      sql`UPDATE deployment_steps SET status = 'skipped', reason = ${reason}, finished_at = ${now}
           WHERE deployment_id = ${deploymentId} AND status = 'pending'
             AND agent_id IN (SELECT agent_id FROM deployment_targets WHERE deployment_id = ${deploymentId} AND wave > ${after} AND dispatched_at IS NULL)`,
      sql`UPDATE deployments SET current_wave = waves, updated_at = ${now} WHERE id = ${deploymentId} AND current_wave = ${after}`,
      ...deploymentStatements(one(deploymentId), now),
    ].map((s) => prepared(db, s)),
  );
}

// POST /api/v1/deployments/:id/cancel, in one batch: the cancel is recorded, steps no
// agent holds yet end `canceled` at once; the agents holding the others get a cancel
// command (targetsToTellOfCancel) and report their steps' ends themselves.
export async function cancelDeployment(db: D1Database, deploymentId: string, now: number): Promise<void> {
  await db.batch(
    [
      sql`UPDATE deployments SET canceled_at = ${now}, updated_at = ${now}
           WHERE id = ${deploymentId} AND canceled_at IS NULL AND status IN ${OPEN}`,
      sql`UPDATE deployment_steps SET status = 'canceled', reason = ${CANCELED_REASON}, finished_at = ${now}
           WHERE deployment_id = ${deploymentId} AND status = 'pending'
             AND EXISTS (SELECT 1 FROM deployments WHERE id = ${deploymentId} AND canceled_at IS NOT NULL)
             AND agent_id IN (SELECT agent_id FROM deployment_targets WHERE deployment_id = ${deploymentId} AND dispatched_at IS NULL)`,
      ...deploymentStatements(one(deploymentId), now),
    ].map((s) => prepared(db, s)),
  );
}

// Agents holding a command of a canceled deployment that have not been sent the cancel.
export async function targetsToTellOfCancel(db: D1Database, deploymentId: string, limit = 100): Promise<string[]> {
  const rows = await prepared(
    db,
    sql`SELECT t.agent_id AS agentId FROM deployment_targets t JOIN deployments d ON d.id = t.deployment_id
         JOIN agents a ON a.id = t.agent_id
         WHERE t.deployment_id = ${deploymentId} AND d.canceled_at IS NOT NULL
           AND t.dispatched_at IS NOT NULL AND t.cancel_sent_at IS NULL AND a.revoked_at IS NULL
         LIMIT ${limit}`,
  ).all<{ agentId: string }>();
  return rows.results.map((r) => r.agentId);
}

export async function markCancelSent(db: D1Database, deploymentId: string, agentId: string, now: number): Promise<void> {
  await prepared(
    db,
    sql`UPDATE deployment_targets SET cancel_sent_at = ${now} WHERE deployment_id = ${deploymentId} AND agent_id = ${agentId} AND cancel_sent_at IS NULL`,
  ).run();
}

// Open deployments a coordinator must look after: more than one wave, a cancel to
// carry, or targets not dispatched yet (a large first wave is the coordinator's). The cron pokes their coordinators in case the first poke was lost.
// `undispatchedBefore`: only deployments created before it count for their undispatched
// targets (a younger one's first dispatch may still be running).
export async function coordinatedOpenDeployments(db: D1Database, undispatchedBefore: number, limit = 50): Promise<string[]> {
  const rows = await prepared(
    db,
    sql`SELECT id FROM deployments WHERE status IN ${OPEN}
          AND (waves > 1 OR canceled_at IS NOT NULL
               OR (created_at < ${undispatchedBefore}
                   AND EXISTS (SELECT 1 FROM deployment_targets t WHERE t.deployment_id = deployments.id AND t.dispatched_at IS NULL)))
        ORDER BY updated_at LIMIT ${limit}`,
  ).all<{ id: string }>();
  return rows.results.map((r) => r.id);
}
