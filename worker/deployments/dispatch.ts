// Hands each agent its command by storing it in the agent's Durable Object.
// enqueue is idempotent by command id, so a dispatch may be repeated freely;
// dispatched_at stays null until the DO has stored the command, and the cron
// (redispatchStale) repeats any dispatch that was interrupted.
import { and, asc, eq, isNull, lt, sql } from "drizzle-orm";
import type { CommandBody } from "../../schema/agent-api.ts";
import { deploymentSteps, deploymentTargets, deployments } from "../../schema/d1.ts";
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
export type DispatchTarget = { deploymentId: string; agentId: string; commandId: string; steps: StepToDispatch[] };

export const REDISPATCH_AFTER_MS = 10_000;

export function deployCommand(t: DispatchTarget): CommandBody {
  return {
    type: "deploy",
    id: t.commandId,
    deploymentId: t.deploymentId,
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

export async function dispatchTarget(env: Env, t: DispatchTarget): Promise<number> {
  const stub = env.AGENT_CHANNEL.get(env.AGENT_CHANNEL.idFromName(t.agentId));
  const { seq } = await stub.enqueue(t.agentId, deployCommand(t));
  await d1(env)
    .update(deploymentTargets)
    .set({ dispatchedAt: Date.now() })
    .where(and(eq(deploymentTargets.deploymentId, t.deploymentId), eq(deploymentTargets.agentId, t.agentId), isNull(deploymentTargets.dispatchedAt)))
    .run();
  return seq;
}

// A failed dispatch is logged and left for the cron: the deployment is already accepted.
export async function dispatchAll(env: Env, targets: readonly DispatchTarget[]): Promise<{ failed: number }> {
  const results = await Promise.allSettled(targets.map((t) => dispatchTarget(env, t)));
  let failed = 0;
  results.forEach((r, i) => {
    if (r.status === "rejected") {
      failed++;
      const t = targets[i];
      console.error(`dispatch of command ${t.commandId} to agent ${t.agentId} failed (the cron will retry):`, r.reason);
    }
  });
  return { failed };
}

export async function redispatchStale(env: Env, now: number, limit = 100): Promise<{ attempted: number; failed: number }> {
  const db = d1(env);
  const stale = await db
    .select({ deploymentId: deploymentTargets.deploymentId, agentId: deploymentTargets.agentId, commandId: deploymentTargets.commandId })
    .from(deploymentTargets)
    .innerJoin(deployments, eq(deployments.id, deploymentTargets.deploymentId))
    .where(and(isNull(deploymentTargets.dispatchedAt), lt(deployments.createdAt, now - REDISPATCH_AFTER_MS), sql`${deployments.status} <> 'canceled'`))
    .limit(limit)
    .all();
  const targets: DispatchTarget[] = [];
  for (const s of stale) {
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
      .where(and(eq(deploymentSteps.deploymentId, s.deploymentId), eq(deploymentSteps.agentId, s.agentId)))
      .orderBy(asc(deploymentSteps.position))
      .all();
    if (steps.length === 0) {
      console.error(`deployment target ${s.commandId} has no steps; not dispatching`);
      continue;
    }
    targets.push({ ...s, steps });
  }
  const { failed } = await dispatchAll(env, targets);
  return { attempted: targets.length, failed };
}
