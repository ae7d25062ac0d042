// Hands each agent its command by storing it in the agent's Durable Object.
// enqueue is idempotent by command id, so a dispatch may be repeated freely;
// dispatched_at stays null until the DO has stored the command. Three things repeat
// an interrupted dispatch (docs/protocol.md §Dispatch): the cron (redispatchStale),
// the agent's own DO on hello and on its presence alarm (undispatchedTargets), and a
// POST /api/v1/deployments retried with its Idempotency-Key.
import { and, asc, eq, isNull, lt, sql, type SQL } from "drizzle-orm";
import type { CommandBody } from "../../schema/agent-api.ts";
import { agents, deploymentSteps, deploymentTargets, deployments } from "../../schema/d1.ts";
import { d1 } from "../db.ts";
import type { Env } from "../env.ts";

export type StepToDispatch = {
  id: string;
  position: number;
  name: string;
  command: string;
  timeoutSeconds: number | null;
  retry: "never" | "safe";
};
export type DispatchTarget = { deploymentId: string; agentId: string; commandId: string; agentLostAfterSeconds: number; steps: StepToDispatch[] };

export const REDISPATCH_AFTER_MS = 10_000;

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

export async function markDispatched(env: Env, t: { deploymentId: string; agentId: string }, now: number): Promise<void> {
  await d1(env)
    .update(deploymentTargets)
    .set({ dispatchedAt: now })
    .where(and(eq(deploymentTargets.deploymentId, t.deploymentId), eq(deploymentTargets.agentId, t.agentId), isNull(deploymentTargets.dispatchedAt)))
    .run();
}

export async function dispatchTarget(env: Env, t: DispatchTarget): Promise<number> {
  const stub = env.AGENT_CHANNEL.get(env.AGENT_CHANNEL.idFromName(t.agentId));
  const { seq } = await stub.enqueue(t.agentId, deployCommand(t));
  await markDispatched(env, t, Date.now());
  return seq;
}

// A failed dispatch is logged and left for the cron / the agent's DO: the deployment is already accepted.
export async function dispatchAll(env: Env, targets: readonly DispatchTarget[]): Promise<{ failed: number }> {
  const results = await Promise.allSettled(targets.map((t) => dispatchTarget(env, t)));
  let failed = 0;
  results.forEach((r, i) => {
    if (r.status === "rejected") {
      failed++;
      const t = targets[i];
      console.error(`dispatch of command ${t.commandId} to agent ${t.agentId} failed (will be retried):`, r.reason);
    }
  });
  return { failed };
}

// Undispatched targets of live (not revoked) agents, rebuilt from D1 rows alone.
export async function undispatchedTargets(
  env: Env,
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

export async function redispatchStale(env: Env, now: number, limit = 90): Promise<{ attempted: number; failed: number }> {
  const targets = await undispatchedTargets(env, { createdBefore: now - REDISPATCH_AFTER_MS }, limit);
  const { failed } = await dispatchAll(env, targets);
  return { attempted: targets.length, failed };
}
