// The cron's share of dispatch (docs/protocol.md §Dispatch): repeats interrupted
// dispatches, and pokes the coordinators of open rollouts and cancels in case their
// first poke was lost (each coordinator then keeps its own alarm).
import { undispatchedTargets } from "../../d1/dispatch-targets.ts";
import { coordinatedOpenDeployments } from "../../d1/rollout.ts";
import { coordinatorOf } from "../../durable-objects/channels.ts";
import { dispatchAll } from "../../durable-objects/dispatch.ts";
import type { Env } from "../env.ts";

export const REDISPATCH_AFTER_MS = 10_000;

export async function redispatchStale(env: Env, now: number, limit = 90): Promise<{ attempted: number; failed: number }> {
  const targets = await undispatchedTargets(env, { createdBefore: now - REDISPATCH_AFTER_MS }, limit);
  const { failed } = await dispatchAll(env, targets);
  return { attempted: targets.length, failed };
}

export async function pokeCoordinators(env: Env, now = Date.now()): Promise<number> {
  const ids = await coordinatedOpenDeployments(env.DB, now - REDISPATCH_AFTER_MS);
  const results = await Promise.allSettled(ids.map((id) => coordinatorOf(env, id).poke(id)));
  results.forEach((r, i) => {
    if (r.status === "rejected") console.error(`cron: the coordinator of deployment ${ids[i]} could not be reached (next cron retries):`, r.reason);
  });
  return ids.length;
}
