// The D1 side of dispatch (docs/protocol.md §Dispatch): a deployment's targets — one
// command per (deployment, agent) — as D1 holds them, the command each becomes, and
// the mark that its agent's channel has stored it. dispatched_at stays null until
// then, so an interrupted dispatch is found again and repeated: by the Worker's cron
// and by a retried POST (worker/deployments/dispatch.ts), and by the agent's own
// channel (durable-objects/self-dispatch.ts).
import { and, asc, eq, isNull, lt, lte, sql, type SQL } from "drizzle-orm";
import { stepToRun, type CommandBody, type CommandContext } from "../schema/agent-api.ts";
import type { Properties } from "../schema/api.ts";
import { agents, deploymentSteps, deploymentTargets, deployments } from "../schema/d1.ts";
import type { RetryPolicy, StepType } from "../schema/steps.ts";
import { d1 } from "./db.ts";

// `definition`: JSON of the wire step's fields beyond the columns (a plug-in step's
// pinned package, argv, inputs, declared inputs/outputs; the secrets a step names).
export type StepToDispatch = {
  id: string;
  position: number;
  name: string;
  type: StepType;
  command: string;
  definition: string | null;
  timeoutSeconds: number | null;
  retry: RetryPolicy;
};
export type DispatchTarget = {
  deploymentId: string;
  agentId: string;
  commandId: string;
  agentLostAfterSeconds: number;
  waves: number; // of the deployment: with more than one, its coordinator follows each agent's end
  context: CommandContext;
  steps: StepToDispatch[];
};

export class DispatchError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DispatchError";
  }
}

export function deployCommand(t: DispatchTarget): CommandBody {
  return {
    type: "deploy",
    id: t.commandId,
    deploymentId: t.deploymentId,
    agentLostAfterSeconds: t.agentLostAfterSeconds,
    context: t.context,
    steps: [...t.steps].sort((a, b) => a.position - b.position).map(wireStep),
  };
}

function wireStep(s: StepToDispatch) {
  const extra = s.definition === null ? {} : (JSON.parse(s.definition) as Record<string, unknown>);
  const raw = { ...extra, stepId: s.id, position: s.position, name: s.name, type: s.type, timeoutSeconds: s.timeoutSeconds, retry: s.retry, ...(s.type === "shell" ? { command: s.command } : {}) };
  const parsed = stepToRun.safeParse(raw);
  if (!parsed.success) throw new DispatchError(`step ${s.id} cannot be sent: its stored definition is not a valid ${s.type} step`, { cause: parsed.error });
  return parsed.data;
}

// Also says whether the deployment was canceled meanwhile (same statement, no extra read).
export async function markDispatched(env: { DB: D1Database }, t: { deploymentId: string; agentId: string }, now: number): Promise<{ canceled: boolean }> {
  const [canceled] = await markManyDispatched(env, t.deploymentId, [t.agentId], now);
  return { canceled: canceled !== undefined };
}

// The same for many targets of one deployment in one statement: returns the agents the
// mark found canceled meanwhile (they are told of the cancel by the caller).
export async function markManyDispatched(env: { DB: D1Database }, deploymentId: string, agentIds: readonly string[], now: number): Promise<string[]> {
  if (agentIds.length === 0) return [];
  const rows = await d1(env)
    .update(deploymentTargets)
    .set({ dispatchedAt: now })
    .where(
      and(
        eq(deploymentTargets.deploymentId, deploymentId),
        sql`${deploymentTargets.agentId} IN (SELECT value FROM json_each(${JSON.stringify(agentIds)}))`,
        isNull(deploymentTargets.dispatchedAt),
      ),
    )
    .returning({ agentId: deploymentTargets.agentId, canceledAt: sql<number | null>`(SELECT canceled_at FROM deployments WHERE id = ${deploymentId})` })
    .all();
  return rows.filter((r) => r.canceledAt !== null).map((r) => r.agentId);
}

// Undispatched targets of live (not revoked) agents, rebuilt from D1 rows alone.
export async function undispatchedTargets(
  env: { DB: D1Database },
  filter: { agentId?: string; deploymentId?: string; createdBefore?: number },
  limit = 100,
): Promise<DispatchTarget[]> {
  const db = d1(env);
  // A target of a later rollout wave waits for its wave (the coordinator moves current_wave on).
  const where: SQL[] = [
    isNull(deploymentTargets.dispatchedAt),
    isNull(agents.revokedAt),
    isNull(deployments.canceledAt),
    sql`${deployments.status} <> 'canceled'`,
    lte(deploymentTargets.wave, deployments.currentWave),
  ];
  if (filter.agentId !== undefined) where.push(eq(deploymentTargets.agentId, filter.agentId));
  if (filter.deploymentId !== undefined) where.push(eq(deploymentTargets.deploymentId, filter.deploymentId));
  if (filter.createdBefore !== undefined) where.push(lt(deployments.createdAt, filter.createdBefore));
  const rows = await db
    .select({
      deploymentId: deploymentTargets.deploymentId,
      agentId: deploymentTargets.agentId,
      commandId: deploymentTargets.commandId,
      agentLostAfterSeconds: deployments.agentLostAfterSeconds,
      waves: deployments.waves,
      agentName: agents.name,
      agentProperties: deploymentTargets.agentProperties,
      deploymentProperties: deployments.properties,
    })
    .from(deploymentTargets)
    .innerJoin(deployments, eq(deployments.id, deploymentTargets.deploymentId))
    .innerJoin(agents, eq(agents.id, deploymentTargets.agentId))
    .where(and(...where))
    .orderBy(asc(deployments.createdAt))
    .limit(limit)
    .all();
  // The steps of a page's targets: one indexed read per deployment in the page.
  const stepsOf = new Map<string, StepToDispatch[]>();
  for (const deploymentId of new Set(rows.map((r) => r.deploymentId))) {
    const agentIds = rows.filter((r) => r.deploymentId === deploymentId).map((r) => r.agentId);
    const steps = await db
      .select({
        agentId: deploymentSteps.agentId,
        id: deploymentSteps.id,
        position: deploymentSteps.position,
        name: deploymentSteps.name,
        type: deploymentSteps.type,
        command: deploymentSteps.command,
        definition: deploymentSteps.definition,
        timeoutSeconds: deploymentSteps.timeoutSeconds,
        retry: deploymentSteps.retry,
      })
      .from(deploymentSteps)
      .where(and(eq(deploymentSteps.deploymentId, deploymentId), sql`${deploymentSteps.agentId} IN (SELECT value FROM json_each(${JSON.stringify(agentIds)}))`))
      .orderBy(asc(deploymentSteps.agentId), asc(deploymentSteps.position))
      .all();
    for (const { agentId, ...step } of steps) {
      const key = `${deploymentId} ${agentId}`;
      if (!stepsOf.has(key)) stepsOf.set(key, []);
      stepsOf.get(key)!.push(step);
    }
  }
  const targets: DispatchTarget[] = [];
  for (const r of rows) {
    const steps = stepsOf.get(`${r.deploymentId} ${r.agentId}`) ?? [];
    if (steps.length === 0) {
      console.error(`deployment target ${r.commandId} has no steps; not dispatching`);
      continue;
    }
    const { agentName, agentProperties, deploymentProperties, ...target } = r;
    const context = {
      agentName,
      agentProperties: JSON.parse(agentProperties) as Properties,
      deploymentProperties: JSON.parse(deploymentProperties) as Properties,
    };
    targets.push({ ...target, context, steps });
  }
  return targets;
}
