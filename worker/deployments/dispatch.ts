// Hands each agent its command by storing it in the agent's Durable Object.
// enqueue is idempotent by command id, so a dispatch may be repeated freely;
// dispatched_at stays null until the DO has stored the command (d1/dispatch-targets.ts).
// Three things repeat an interrupted dispatch (docs/protocol.md §Dispatch): the cron
// (redispatchStale), the agent's own DO on hello and on its presence alarm, and a
// POST /api/v1/deployments retried with its Idempotency-Key.
import { deployCommand, markDispatched, undispatchedTargets, type DispatchTarget } from "../../d1/dispatch-targets.ts";
import { channelOf } from "../channels.ts";
import type { Env } from "../env.ts";

export const REDISPATCH_AFTER_MS = 10_000;

export async function dispatchTarget(env: Env, t: DispatchTarget): Promise<number> {
  const { seq } = await channelOf(env, t.agentId).enqueue(t.agentId, deployCommand(t));
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

export async function redispatchStale(env: Env, now: number, limit = 90): Promise<{ attempted: number; failed: number }> {
  const targets = await undispatchedTargets(env, { createdBefore: now - REDISPATCH_AFTER_MS }, limit);
  const { failed } = await dispatchAll(env, targets);
  return { attempted: targets.length, failed };
}
