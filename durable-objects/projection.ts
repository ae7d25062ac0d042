// Writes applied reports into D1. Every statement only moves state forward, so
// projecting the same report twice (a retry after an unclear failure) is harmless.
import { sql, type SQL } from "drizzle-orm";
import { prepared } from "../worker/db.ts";
import type { Report } from "../schema/agent-api.ts";

const ACTIVE = sql.raw(`('pending', 'running')`);

function stepStatements(agentId: string, r: Report): SQL[] {
  if (r.type === "step-started") {
    return [
      sql`UPDATE deployment_steps
            SET status = CASE WHEN status = 'pending' THEN 'running' ELSE status END,
                started_at = COALESCE(started_at, ${r.at})
          WHERE id = ${r.stepId} AND deployment_id = ${r.deploymentId} AND agent_id = ${agentId}`,
    ];
  }
  return [
    sql`UPDATE deployment_steps
          SET status = ${r.status}, exit_code = ${r.exitCode}, reason = ${r.reason}, finished_at = ${r.at}
        WHERE id = ${r.stepId} AND deployment_id = ${r.deploymentId} AND agent_id = ${agentId}
          AND status IN ${ACTIVE}`,
  ];
}

// Mirrors rules.ts deploymentOutcome: ends the deployment once no step is active.
function deploymentStatements(deploymentId: string, now: number): SQL[] {
  return [
    sql`UPDATE deployments SET status = 'running', updated_at = ${now}
         WHERE id = ${deploymentId} AND status = 'queued'`,
    sql`UPDATE deployments
           SET status = CASE WHEN EXISTS (SELECT 1 FROM deployment_steps
                                           WHERE deployment_id = ${deploymentId} AND status <> 'succeeded')
                             THEN 'failed' ELSE 'succeeded' END,
               finished_at = ${now}, updated_at = ${now}
         WHERE id = ${deploymentId} AND status IN ('queued', 'running')
           AND EXISTS (SELECT 1 FROM deployment_steps WHERE deployment_id = ${deploymentId})
           AND NOT EXISTS (SELECT 1 FROM deployment_steps
                            WHERE deployment_id = ${deploymentId} AND status IN ${ACTIVE})`,
  ];
}

// One D1 batch (atomic): either every report of the page is projected or none.
export async function projectReports(db: D1Database, agentId: string, reports: readonly Report[], now: number): Promise<void> {
  if (reports.length === 0) return;
  const statements: SQL[] = reports.flatMap((r) => stepStatements(agentId, r));
  for (const deploymentId of new Set(reports.map((r) => r.deploymentId))) {
    statements.push(...deploymentStatements(deploymentId, now));
  }
  await db.batch(statements.map((s) => prepared(db, s)));
}

export async function setPresence(
  db: D1Database,
  agentId: string,
  presence: { status: "online" | "offline"; lastSeenAt: number; version?: string },
): Promise<void> {
  if (presence.version !== undefined) {
    await prepared(db, sql`UPDATE agents SET status = ${presence.status}, last_seen_at = ${presence.lastSeenAt}, version = ${presence.version}
                      WHERE id = ${agentId}`).run();
  } else {
    await prepared(db, sql`UPDATE agents SET status = ${presence.status}, last_seen_at = MAX(COALESCE(last_seen_at, 0), ${presence.lastSeenAt})
                      WHERE id = ${agentId}`).run();
  }
}
