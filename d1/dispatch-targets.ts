// The D1 side of dispatch (docs/protocol.md §Dispatch): a deployment's targets — one
// command per (deployment, agent) — as D1 holds them, the command each becomes, and
// the mark that its agent's channel has stored it. dispatched_at stays null until
// then, so an interrupted dispatch is found again and repeated: by the Worker's cron
// and by a retried POST (worker/deployments/dispatch.ts), and by the agent's own
// channel (durable-objects/self-dispatch.ts).
import { and, asc, eq, isNull, lt, sql, type SQL } from "drizzle-orm";
import type { CommandBody } from "../schema/agent-api.ts";
import { agents, deploymentSteps, deploymentTargets, deployments } from "../schema/d1.ts";
import type { RetryPolicy } from "../schema/steps.ts";
import { d1 } from "./db.ts";

export type StepToDispatch = {
  id: string;
  position: number;
  name: string;
  command: string;
  timeoutSeconds: number | null;
  retry: RetryPolicy;
};
export type DispatchTarget = { deploymentId: string; agentId: string; commandId: string; agentLostAfterSeconds: number; steps: StepToDispatch[] };

export function deployCommand(t: DispatchTarget): CommandBody {
  return {
    type: "deploy",
    id: t.commandId,
    deploymentId: t.deploymentId,
    agentLostAfterSeconds: t.agentLostAfterSeconds,
    steps: [...t.steps]
      .sort((a, b) => a.position - b.position)
      .map((s) => ({
        stepId: s.id,
        position: s.position,
        name: s.name,
        type: "shell" as const,
        command: s.command,
        timeoutSeconds: s.timeoutSeconds,
        retry: s.retry,
      })),
  };
}

export async function markDispatched(env: { DB: D1Database }, t: { deploymentId: string; agentId: string }, now: number): Promise<void> {
  await d1(env)
    .update(deploymentTargets)
    .set({ dispatchedAt: now })
    .where(and(eq(deploymentTargets.deploymentId, t.deploymentId), eq(deploymentTargets.agentId, t.agentId), isNull(deploymentTargets.dispatchedAt)))
    .run();
}

// Undispatched targets of live (not revoked) agents, rebuilt from D1 rows alone.
export async function undispatchedTargets(
  env: { DB: D1Database },
  filter: { agentId?: string; deploymentId?: string; createdBefore?: number },
  limit = 100,
): Promise<DispatchTarget[]> {
  const db = d1(env);
  const where: SQL[] = [isNull(deploymentTargets.dispatchedAt), isNull(agents.revokedAt), sql`${deployments.status} <> 'canceled'`];
  if (filter.agentId !== undefined) where.push(eq(deploymentTargets.agentId, filter.agentId));
  if (filter.deploymentId !== undefined) where.push(eq(deploymentTargets.deploymentId, filter.deploymentId));
  if (filter.createdBefore !== undefined) where.push(lt(deployments.createdAt, filter.createdBefore));
  const rows = await db
    .select({
      deploymentId: deploymentTargets.deploymentId,
      agentId: deploymentTargets.agentId,
      commandId: deploymentTargets.commandId,
      agentLostAfterSeconds: deployments.agentLostAfterSeconds,
    })
    .from(deploymentTargets)
    .innerJoin(deployments, eq(deployments.id, deploymentTargets.deploymentId))
    .innerJoin(agents, eq(agents.id, deploymentTargets.agentId))
    .where(and(...where))
    .orderBy(asc(deployments.createdAt))
    .limit(limit)
    .all();
  const targets: DispatchTarget[] = [];
  for (const r of rows) {
    // Indexed by (deployment_id, agent_id, position): one small read per target.
    const steps = await db
      .select({
        id: deploymentSteps.id,
        position: deploymentSteps.position,
        name: deploymentSteps.name,
        command: deploymentSteps.command,
        timeoutSeconds: deploymentSteps.timeoutSeconds,
        retry: deploymentSteps.retry,
      })
      .from(deploymentSteps)
      .where(and(eq(deploymentSteps.deploymentId, r.deploymentId), eq(deploymentSteps.agentId, r.agentId)))
      .orderBy(asc(deploymentSteps.position))
      .all();
    if (steps.length === 0) {
      console.error(`deployment target ${r.commandId} has no steps; not dispatching`);
      continue;
    }
    targets.push({ ...r, steps });
  }
  return targets;
}
