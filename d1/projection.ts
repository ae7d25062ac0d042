// Writes applied reports and the channel's decisions into D1. Every statement only
// moves state forward (the one exception: a step failed as agent-lost still takes its
// late result), so projecting the same job twice (a retry after an unclear failure) is
// harmless. Also the agent's presence row. docs/protocol.md §Projection.
import { sql, type SQL } from "drizzle-orm";
import type { Report } from "../schema/agent-api.ts";
import { ACTIVE_STEP_STATUSES, DEPLOYMENT_STATUSES, FINAL_DEPLOYMENT_STATUSES, lateResultReason, SERVER_REASONS } from "../schema/steps.ts";
import { prepared, sqlList } from "./db.ts";

// What the projection writes to D1: an applied report, or a decision the server took
// about this agent's steps (docs/protocol.md §Agent lost, §Revoke). A report carries
// when its work happened placed on the server's clock (`at`) and when the server
// received it (`receivedAt`).
export type ProjectionJob =
  | { kind: "report"; report: Report; at: number; receivedAt: number }
  | { kind: "agent-lost"; deploymentId: string; at: number }
  | { kind: "revoked"; at: number };

const AGENT_LOST_REASON = SERVER_REASONS.agentLost;

// A step whose result is still awaited: active, or failed as agent-lost (its real
// result, and its output, may still come). `alias` prefixes the columns ("s.").
export function awaitingResultSql(alias = ""): string {
  return `(${alias}status IN ${sqlList(ACTIVE_STEP_STATUSES)} OR (${alias}status = 'failed' AND ${alias}reason = '${AGENT_LOST_REASON}'))`;
}
const REVOKED_REASON = SERVER_REASONS.revoked;

const ACTIVE = sql.raw(sqlList(ACTIVE_STEP_STATUSES));
const OPEN_DEPLOYMENT = sql.raw(sqlList(DEPLOYMENT_STATUSES.filter((s) => !(FINAL_DEPLOYMENT_STATUSES as readonly string[]).includes(s))));

// docs/protocol.md §Revoke: once D1 says the agent is revoked, nothing it sent changes a
// step, whatever order the revoke and a late report took.
const notRevoked = (agentId: string) => sql`NOT EXISTS (SELECT 1 FROM agents WHERE id = ${agentId} AND revoked_at IS NOT NULL)`;

// §Reports "Times": `at` is already on the server's clock and no later than receivedAt;
// here it is also kept from preceding the deployment's creation (and a finish from
// preceding the step's start).
//
// A run of reports is projected by two set-based statements (UPDATE … FROM the reports
// as JSON), all started reports then all finished ones: a page of 100 reports costs D1
// two statements, not a hundred. splitRuns cuts the page wherever that could differ from
// projecting the reports one by one.
type ReportJob = Extract<ProjectionJob, { kind: "report" }>;

function reportRunStatements(agentId: string, run: readonly ReportJob[]): SQL[] {
  const created = sql.raw(`COALESCE((SELECT created_at FROM deployments d WHERE d.id = deployment_steps.deployment_id), 0)`);
  const mine = sql`deployment_steps.id = j.step_id AND deployment_steps.deployment_id = j.deployment_id AND deployment_steps.agent_id = ${agentId} AND ${notRevoked(agentId)}`;
  const out: SQL[] = [];
  const started = run.filter((j) => j.report.type === "step-started");
  if (started.length > 0) {
    const rows = JSON.stringify(started.map((j) => ({ s: j.report.stepId, d: j.report.deploymentId, at: j.at })));
    out.push(sql`UPDATE deployment_steps
            SET status = CASE WHEN deployment_steps.status = 'pending' THEN 'running' ELSE deployment_steps.status END,
                started_at = COALESCE(deployment_steps.started_at, MAX(j.at, ${created}))
           FROM (SELECT json_extract(value, '$.s') AS step_id, json_extract(value, '$.d') AS deployment_id, json_extract(value, '$.at') AS at
                   FROM json_each(${rows})) AS j
          WHERE ${mine}`);
  }
  const finished = run.flatMap((j) => (j.report.type === "step-finished" ? [{ ...j, report: j.report }] : []));
  if (finished.length > 0) {
    const rows = JSON.stringify(
      finished.map((j) => ({
        s: j.report.stepId,
        d: j.report.deploymentId,
        at: j.at,
        rcv: j.receivedAt,
        st: j.report.status,
        ec: j.report.exitCode,
        out: j.report.outputs === undefined ? null : JSON.stringify(j.report.outputs),
        why: j.report.reason,
        late: lateResultReason(j.report.reason),
      })),
    );
    // SET expressions read the row's old values: the CASE tells an active step from one
    // that was failed as agent-lost (the late result is recorded, flagged as late).
    out.push(sql`UPDATE deployment_steps
          SET status = j.st, exit_code = j.ec, outputs = j.out,
              finished_at = MIN(j.rcv, MAX(j.at, COALESCE(deployment_steps.started_at, 0), ${created})),
              reported_at = j.rcv,
              reason = CASE WHEN deployment_steps.status IN ${ACTIVE} THEN j.why ELSE j.late END
         FROM (SELECT json_extract(value, '$.s') AS step_id, json_extract(value, '$.d') AS deployment_id, json_extract(value, '$.at') AS at,
                      json_extract(value, '$.rcv') AS rcv, json_extract(value, '$.st') AS st, json_extract(value, '$.ec') AS ec,
                      json_extract(value, '$.out') AS out, json_extract(value, '$.why') AS why, json_extract(value, '$.late') AS late
                 FROM json_each(${rows})) AS j
        WHERE ${mine}
          AND ${sql.raw(awaitingResultSql("deployment_steps."))}`);
  }
  return out;
}

// Consecutive report jobs, cut where "all started, then all finished" could differ from
// one by one: a step met again in the same kind of report, or started after its finish
// (the ledger never sends either, but the projection does not rely on it).
export function splitRuns(jobs: readonly ProjectionJob[]): (ReportJob[] | Exclude<ProjectionJob, ReportJob>)[] {
  const out: (ReportJob[] | Exclude<ProjectionJob, ReportJob>)[] = [];
  let run: ReportJob[] = [];
  let seen = new Set<string>();
  let finished = new Set<string>();
  const close = () => {
    if (run.length > 0) out.push(run);
    run = [];
    seen = new Set();
    finished = new Set();
  };
  for (const job of jobs) {
    if (job.kind !== "report") {
      close();
      out.push(job);
      continue;
    }
    const key = `${job.report.type} ${job.report.stepId}`;
    if (seen.has(key) || (job.report.type === "step-started" && finished.has(job.report.stepId))) close();
    seen.add(key);
    if (job.report.type === "step-finished") finished.add(job.report.stepId);
    run.push(job);
  }
  close();
  return out;
}

// Mirrors durable-objects/rules.ts deploymentOutcome (the oracle of its tests): ends the deployment once no step is active; a
// terminal deployment is never touched again. It runs once a step has left pending, and
// finished when its last step did: `canceled` if a cancel was asked for, else
// succeeded or failed by its steps.
export function deploymentStatements(deploymentIds: SQL, now: number): SQL[] {
  return [
    sql`UPDATE deployments SET status = 'running', updated_at = ${now}
         WHERE id IN ${deploymentIds} AND status = 'queued'
           AND EXISTS (SELECT 1 FROM deployment_steps s WHERE s.deployment_id = deployments.id AND s.status <> 'pending')`,
    sql`UPDATE deployments
           SET status = CASE WHEN canceled_at IS NOT NULL THEN 'canceled'
                             WHEN EXISTS (SELECT 1 FROM deployment_steps s
                                           WHERE s.deployment_id = deployments.id
                                             AND (s.status <> 'succeeded' OR s.reason LIKE ${AGENT_LOST_REASON + "%"}))
                             THEN 'failed' ELSE 'succeeded' END,
               finished_at = COALESCE((SELECT MAX(s.finished_at) FROM deployment_steps s WHERE s.deployment_id = deployments.id), ${now}),
               updated_at = ${now}
         WHERE id IN ${deploymentIds} AND status IN ${OPEN_DEPLOYMENT}
           AND EXISTS (SELECT 1 FROM deployment_steps s WHERE s.deployment_id = deployments.id)
           AND NOT EXISTS (SELECT 1 FROM deployment_steps s
                            WHERE s.deployment_id = deployments.id AND s.status IN ${ACTIVE})`,
  ];
}

// §Revoke: every active step of the agent, including those of targets never dispatched
// to it, canceled; its deployments recomputed. Idempotent. The Worker runs these in the
// revoke's own D1 batch; the channel projects them again for commands stored later.
export function revokedStatements(db: D1Database, agentId: string, at: number): D1PreparedStatement[] {
  const { steps, deployments } = jobStatements(agentId, { kind: "revoked", at });
  return [...steps, ...deploymentStatements(deployments as SQL, at)].map((s) => prepared(db, s));
}

function jobStatements(agentId: string, job: ProjectionJob): { steps: SQL[]; deployments: SQL | string } {
  switch (job.kind) {
    case "report":
      return { steps: reportRunStatements(agentId, [job]), deployments: job.report.deploymentId };
    case "agent-lost":
      return {
        steps: [
          sql`UPDATE deployment_steps SET status = 'failed', reason = ${AGENT_LOST_REASON}, finished_at = ${job.at}
               WHERE deployment_id = ${job.deploymentId} AND agent_id = ${agentId} AND status IN ${ACTIVE}`,
        ],
        deployments: job.deploymentId,
      };
    case "revoked":
      // Every active step of the agent, including those of targets never dispatched to it.
      return {
        steps: [
          sql`UPDATE deployment_steps SET status = 'canceled', reason = ${REVOKED_REASON}, finished_at = ${job.at}
               WHERE agent_id = ${agentId} AND status IN ${ACTIVE}`,
        ],
        deployments: sql`(SELECT deployment_id FROM deployment_targets WHERE agent_id = ${agentId})`,
      };
  }
}

// One D1 batch (atomic): either every job of the page is projected or none.
export async function projectJobs(db: D1Database, agentId: string, jobs: readonly ProjectionJob[], now: number): Promise<void> {
  if (jobs.length === 0) return;
  const statements: SQL[] = [];
  const deploymentIds = new Set<string>();
  const subqueries: SQL[] = [];
  for (const part of splitRuns(jobs)) {
    if (Array.isArray(part)) {
      statements.push(...reportRunStatements(agentId, part));
      for (const j of part) deploymentIds.add(j.report.deploymentId);
      continue;
    }
    const { steps, deployments } = jobStatements(agentId, part);
    statements.push(...steps);
    if (typeof deployments === "string") deploymentIds.add(deployments);
    else subqueries.push(deployments);
  }
  if (deploymentIds.size > 0) statements.push(...deploymentStatements(sql`(SELECT value FROM json_each(${JSON.stringify([...deploymentIds])}))`, now));
  for (const q of subqueries) statements.push(...deploymentStatements(q, now));
  await db.batch(statements.map((s) => prepared(db, s)));
}

// Presence of a live agent only: a revoked agent's row is never marked online (or
// touched at all). Returns false when no row changed — the agent is revoked (or gone).
export async function setPresence(
  db: D1Database,
  agentId: string,
  presence: { status: "online" | "offline"; lastSeenAt: number; version?: string },
): Promise<boolean> {
  const result =
    presence.version !== undefined
      ? await prepared(db, sql`UPDATE agents SET status = ${presence.status}, last_seen_at = ${presence.lastSeenAt}, version = ${presence.version}
                        WHERE id = ${agentId} AND revoked_at IS NULL`).run()
      : await prepared(db, sql`UPDATE agents SET status = ${presence.status}, last_seen_at = MAX(COALESCE(last_seen_at, 0), ${presence.lastSeenAt})
                        WHERE id = ${agentId} AND revoked_at IS NULL`).run();
  return result.meta.changes > 0;
}

// Whether D1 says the agent is revoked: the channel may not have been told (the revoke's
// call to it failed) and must then end the agent's work itself.
export async function isRevokedInD1(db: D1Database, agentId: string): Promise<boolean> {
  const row = await db.prepare("SELECT revoked_at AS revokedAt FROM agents WHERE id = ?").bind(agentId).first<{ revokedAt: number | null }>();
  return row !== null && row.revokedAt !== null;
}
