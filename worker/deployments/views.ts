// DeploymentView read models: steps ordered by agent name, then position.
// Each read is one D1 batch, i.e. one consistent snapshot of a deployment and its steps.
import type { DeploymentStatus, DeploymentView, StepView } from "../../schema/api.ts";

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

type DeploymentRow = { id: string; name: string; status: DeploymentStatus; createdAt: number; finishedAt: number | null };
// A step as D1 returns it: the view's fields, with epoch-ms times and its deployment id.
type StepRow = Omit<StepView, "startedAt" | "finishedAt"> & { deploymentId: string; startedAt: number | null; finishedAt: number | null };

const DEPLOYMENT_COLUMNS = "d.id, d.name, d.status, d.created_at AS createdAt, d.finished_at AS finishedAt";
const STEP_SELECT = `SELECT s.deployment_id AS deploymentId, s.id, a.name AS agent, s.name, s.status, s.exit_code AS exitCode,
                            s.reason, s.started_at AS startedAt, s.finished_at AS finishedAt
                       FROM deployment_steps s JOIN agents a ON a.id = s.agent_id`;
const STEP_ORDER = "ORDER BY a.name, s.position";

function toView(d: DeploymentRow, steps: StepRow[]): DeploymentView {
  return {
    id: d.id,
    name: d.name,
    status: d.status,
    createdAt: new Date(d.createdAt).toISOString(),
    finishedAt: iso(d.finishedAt),
    steps: steps.map((s) => ({
      id: s.id,
      agent: s.agent,
      name: s.name,
      status: s.status,
      exitCode: s.exitCode,
      reason: s.reason,
      startedAt: iso(s.startedAt),
      finishedAt: iso(s.finishedAt),
    })),
  };
}

export async function getDeploymentView(db: D1Database, id: string): Promise<DeploymentView | null> {
  const [deployments, steps] = await db.batch<DeploymentRow | StepRow>([
    db.prepare(`SELECT ${DEPLOYMENT_COLUMNS} FROM deployments d WHERE d.id = ?`).bind(id),
    db.prepare(`${STEP_SELECT} WHERE s.deployment_id = ? ${STEP_ORDER}`).bind(id),
  ]);
  const d = deployments.results[0] as DeploymentRow | undefined;
  return d ? toView(d, steps.results as StepRow[]) : null;
}

export async function listDeploymentViews(db: D1Database, limit: number): Promise<DeploymentView[]> {
  const newest = `SELECT ${DEPLOYMENT_COLUMNS} FROM deployments d ORDER BY d.created_at DESC, d.id DESC LIMIT ?1`;
  const [deployments, steps] = await db.batch<DeploymentRow | StepRow>([
    db.prepare(newest).bind(limit),
    db.prepare(`${STEP_SELECT} WHERE s.deployment_id IN (SELECT id FROM (${newest})) ${STEP_ORDER}`).bind(limit),
  ]);
  const byDeployment = new Map<string, StepRow[]>();
  for (const s of steps.results as StepRow[]) {
    const list = byDeployment.get(s.deploymentId) ?? [];
    list.push(s);
    byDeployment.set(s.deploymentId, list);
  }
  return (deployments.results as DeploymentRow[]).map((d) => toView(d, byDeployment.get(d.id) ?? []));
}
