// Deployment read models. A single deployment comes with its steps (ordered by agent
// name, then position), read in one D1 batch, i.e. one consistent snapshot. The list
// is paged by a cursor and carries step counts by status, never the steps: a page of
// 100 deployments costs 100 rows plus an index-only count, whatever their size.
import type { DeploymentSummary, DeploymentView, Properties, Rollout, StepView } from "../../schema/api.ts";
import { STEP_STATUSES, type DeploymentStatus, type StepStatus } from "../../schema/steps.ts";
import { HttpError } from "../http-errors.ts";

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

type DeploymentRow = { id: string; name: string; status: DeploymentStatus; createdAt: number; finishedAt: number | null; canceledAt: number | null };
type DetailRow = DeploymentRow & { properties: string; targetTags: string | null; rollout: string | null; waves: number; currentWave: number };
// A step as D1 returns it: the view's fields, with epoch-ms times and JSON text.
type StepRow = Omit<StepView, "startedAt" | "finishedAt" | "reportedAt" | "plugin" | "outputs"> & {
  startedAt: number | null;
  finishedAt: number | null;
  reportedAt: number | null;
  pluginId: string | null;
  pluginVersion: string | null;
  pluginStep: string | null;
  outputs: string | null;
};

const DEPLOYMENT_COLUMNS = "d.id, d.name, d.status, d.created_at AS createdAt, d.finished_at AS finishedAt, d.canceled_at AS canceledAt";

const deploymentFields = (d: DeploymentRow) => ({
  id: d.id,
  name: d.name,
  status: d.status,
  createdAt: new Date(d.createdAt).toISOString(),
  finishedAt: iso(d.finishedAt),
  canceledAt: iso(d.canceledAt),
});

const stepView = (s: StepRow): StepView => {
  const { pluginId, pluginVersion, pluginStep, outputs, ...rest } = s;
  return {
    ...rest,
    plugin: pluginId === null ? null : { id: pluginId, version: pluginVersion ?? "", step: pluginStep ?? "" },
    outputs: outputs === null ? {} : (JSON.parse(outputs) as Record<string, string>),
    startedAt: iso(s.startedAt),
    finishedAt: iso(s.finishedAt),
    reportedAt: iso(s.reportedAt),
  };
};

export async function getDeploymentView(db: D1Database, id: string): Promise<DeploymentView | null> {
  const [deployments, targets, steps] = await db.batch<DetailRow | { name: string } | StepRow>([
    db
      .prepare(
        `SELECT ${DEPLOYMENT_COLUMNS}, d.properties, d.target_tags AS targetTags, d.rollout, d.waves, d.current_wave AS currentWave
           FROM deployments d WHERE d.id = ?`,
      )
      .bind(id),
    db.prepare(`SELECT a.name FROM deployment_targets t JOIN agents a ON a.id = t.agent_id WHERE t.deployment_id = ? ORDER BY t.wave, a.name`).bind(id),
    db.prepare(
      `SELECT s.id, a.name AS agent, s.name, s.type, s.plugin_id AS pluginId, s.plugin_version AS pluginVersion,
              json_extract(s.definition, '$.step') AS pluginStep, t.wave, s.outputs,
              s.status, s.exit_code AS exitCode, s.reason,
              s.started_at AS startedAt, s.finished_at AS finishedAt, s.reported_at AS reportedAt
         FROM deployment_steps s JOIN agents a ON a.id = s.agent_id
         JOIN deployment_targets t ON t.deployment_id = s.deployment_id AND t.agent_id = s.agent_id
        WHERE s.deployment_id = ? ORDER BY t.wave, a.name, s.position`,
    ).bind(id),
  ]);
  const d = deployments.results[0] as DetailRow | undefined;
  if (!d) return null;
  const rollout = d.rollout === null ? null : (JSON.parse(d.rollout) as Rollout);
  return {
    ...deploymentFields(d),
    properties: JSON.parse(d.properties) as Properties,
    targets: { agents: (targets.results as { name: string }[]).map((t) => t.name), tags: d.targetTags === null ? null : (JSON.parse(d.targetTags) as string[]) },
    rollout: rollout === null ? null : { batchSize: rollout.batchSize, stopOnFailure: rollout.stopOnFailure, waves: d.waves, currentWave: d.currentWave },
    steps: (steps.results as StepRow[]).map(stepView),
  };
}

// The cursor names the last deployment of a page (newest first: created_at, then id).
// Opaque to clients; base64url of "<createdAt>.<id>".
export function encodeCursor(d: { createdAt: number; id: string }): string {
  return btoa(`${d.createdAt}.${d.id}`).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function decodeCursor(cursor: string): { createdAt: number; id: string } {
  let text: string;
  try {
    text = atob(cursor.replace(/-/g, "+").replace(/_/g, "/"));
  } catch {
    throw new HttpError(400, "invalid query: before is not a cursor this server gave out (use the `next` of a previous page)");
  }
  const m = /^(\d{1,16})\.(.{1,200})$/s.exec(text);
  if (!m) throw new HttpError(400, "invalid query: before is not a cursor this server gave out (use the `next` of a previous page)");
  return { createdAt: Number(m[1]), id: m[2] };
}

const zeroCounts = (): Record<StepStatus, number> => Object.fromEntries(STEP_STATUSES.map((s) => [s, 0])) as Record<StepStatus, number>;

export async function listDeploymentSummaries(
  db: D1Database,
  limit: number,
  before: { createdAt: number; id: string } | null,
): Promise<{ deployments: DeploymentSummary[]; next: string | null }> {
  // One row more than asked tells whether another page follows.
  const page = before
    ? db
        .prepare(`SELECT ${DEPLOYMENT_COLUMNS} FROM deployments d WHERE (d.created_at, d.id) < (?1, ?2) ORDER BY d.created_at DESC, d.id DESC LIMIT ?3`)
        .bind(before.createdAt, before.id, limit + 1)
    : db.prepare(`SELECT ${DEPLOYMENT_COLUMNS} FROM deployments d ORDER BY d.created_at DESC, d.id DESC LIMIT ?1`).bind(limit + 1);
  const rows = (await page.all<DeploymentRow>()).results;
  const shown = rows.slice(0, limit);
  const ids = JSON.stringify(shown.map((d) => d.id));
  const [counts, agents] = await db.batch<{ deploymentId: string; status: StepStatus; n: number }>([
    db.prepare(
      `SELECT deployment_id AS deploymentId, status, count(*) AS n FROM deployment_steps
        WHERE deployment_id IN (SELECT value FROM json_each(?1)) GROUP BY deployment_id, status`,
    ).bind(ids),
    db.prepare(
      `SELECT deployment_id AS deploymentId, count(*) AS n FROM deployment_targets
        WHERE deployment_id IN (SELECT value FROM json_each(?1)) GROUP BY deployment_id`,
    ).bind(ids),
  ]);
  const stepCounts = new Map<string, Record<StepStatus, number>>();
  for (const c of counts.results) {
    const m = stepCounts.get(c.deploymentId) ?? zeroCounts();
    m[c.status] = c.n;
    stepCounts.set(c.deploymentId, m);
  }
  const agentCounts = new Map(agents.results.map((a) => [a.deploymentId, a.n]));
  return {
    deployments: shown.map((d) => ({
      ...deploymentFields(d),
      agentCount: agentCounts.get(d.id) ?? 0,
      stepCounts: stepCounts.get(d.id) ?? zeroCounts(),
    })),
    next: rows.length > limit ? encodeCursor(shown[shown.length - 1]) : null,
  };
}
