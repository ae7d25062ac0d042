// Hands each agent its command by storing it in the agent's channel. enqueue is
// idempotent by command id, so a dispatch may be repeated freely; dispatched_at (and
// cancel_sent_at for a cancel) stays null until the channel has stored the command
// (d1/dispatch-targets.ts). docs/protocol.md §Dispatch, §Cancel.
import { cancelCommandIdFor } from "../schema/agent-api.ts";
import { deployCommand, markDispatched, markManyDispatched, type DispatchTarget } from "../d1/dispatch-targets.ts";
import { markCancelSent } from "../d1/rollout.ts";
import { channelOf } from "./channels.ts";

// A cancel whose D1 batch ran between the store and the mark took this target for
// undispatched: the mark sees the cancel, and the agent is told here.
export async function dispatchTarget(env: Cloudflare.Env, t: DispatchTarget): Promise<number> {
  const { seq } = await channelOf(env, t.agentId).enqueue(t.agentId, deployCommand(t), { coordinated: t.waves > 1 });
  const { canceled } = await markDispatched(env, t, Date.now());
  if (canceled) await sendCancel(env, t.deploymentId, t.agentId);
  return seq;
}

// How many channels one dispatch stores commands in at once: a deployment to a
// thousand agents neither waits for them one by one nor opens a thousand calls at once.
export const DISPATCH_CONCURRENCY = 32;
// A new deployment's first wave up to this many agents is dispatched by the POST itself;
// a larger one by the deployment's coordinator, after the 201.
export const INLINE_DISPATCH_TARGETS = 16;

// A failed dispatch is logged and left for a later pass (cron, the agent's channel, the
// deployment's coordinator): the deployment is already accepted. The marks are written
// once the commands are stored, one statement per deployment.
export async function dispatchAll(env: Cloudflare.Env, targets: readonly DispatchTarget[]): Promise<{ failed: number }> {
  let failed = 0;
  const stored: DispatchTarget[] = [];
  let next = 0;
  const worker = async () => {
    while (next < targets.length) {
      const t = targets[next++];
      try {
        await channelOf(env, t.agentId).enqueue(t.agentId, deployCommand(t), { coordinated: t.waves > 1 });
        stored.push(t);
      } catch (e) {
        failed++;
        console.error(`dispatch of command ${t.commandId} to agent ${t.agentId} failed (will be retried):`, e);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(DISPATCH_CONCURRENCY, targets.length) }, worker));
  for (const deploymentId of new Set(stored.map((t) => t.deploymentId))) {
    const agentIds = stored.filter((t) => t.deploymentId === deploymentId).map((t) => t.agentId);
    try {
      for (const agentId of await markManyDispatched(env, deploymentId, agentIds, Date.now())) await sendCancel(env, deploymentId, agentId);
    } catch (e) {
      // Stored but not marked: a later pass stores them again (idempotent) and marks them.
      failed += agentIds.length;
      console.error(`deployment ${deploymentId}: marking ${agentIds.length} dispatched target(s) failed (will be retried):`, e);
    }
  }
  return { failed };
}

// The cancel command goes after the deploy command in the agent's ledger (it is only
// sent to agents that were dispatched to), so the agent always learns of it in order.
export async function sendCancel(env: Cloudflare.Env, deploymentId: string, agentId: string): Promise<void> {
  await channelOf(env, agentId).enqueue(agentId, { type: "cancel", id: cancelCommandIdFor(deploymentId, agentId), deploymentId });
  await markCancelSent(env.DB, deploymentId, agentId, Date.now());
}
