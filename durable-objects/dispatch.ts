// Hands each agent its command by storing it in the agent's channel. enqueue is
// idempotent by command id, so a dispatch may be repeated freely; dispatched_at (and
// cancel_sent_at for a cancel) stays null until the channel has stored the command
// (d1/dispatch-targets.ts). docs/protocol.md §Dispatch, §Cancel.
import { cancelCommandIdFor } from "../schema/agent-api.ts";
import { deployCommand, markDispatched, type DispatchTarget } from "../d1/dispatch-targets.ts";
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

// A failed dispatch is logged and left for a later pass (cron, the agent's channel, the
// deployment's coordinator): the deployment is already accepted.
export async function dispatchAll(env: Cloudflare.Env, targets: readonly DispatchTarget[]): Promise<{ failed: number }> {
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

// The cancel command goes after the deploy command in the agent's ledger (it is only
// sent to agents that were dispatched to), so the agent always learns of it in order.
export async function sendCancel(env: Cloudflare.Env, deploymentId: string, agentId: string): Promise<void> {
  await channelOf(env, agentId).enqueue(agentId, { type: "cancel", id: cancelCommandIdFor(deploymentId, agentId), deploymentId });
  await markCancelSent(env.DB, deploymentId, agentId, Date.now());
}
