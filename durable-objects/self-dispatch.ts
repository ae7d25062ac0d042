// docs/protocol.md §Dispatch: dispatch must not hang on the cron alone. The agent's own
// channel stores the targets D1 still shows undispatched, on hello and from the presence
// sweep while the agent is connected. A target younger than SELF_DISPATCH_AFTER_MS is
// left alone: its first dispatch may still be on its way.
import { deployCommand, markDispatched, undispatchedTargets } from "../d1/dispatch-targets.ts";
import { cancelCommandIdFor, type CommandBody } from "../schema/agent-api.ts";
import { markCancelSent } from "../d1/rollout.ts";

const SELF_DISPATCH_AFTER_MS = 5000;

export type SelfDispatchDeps = {
  env: { DB: D1Database };
  // The channel's own store: idempotent by command id, announces to the agent.
  store: (command: CommandBody, now: number, coordinated?: boolean) => unknown;
  now: () => number;
};

// A failed lookup is only logged: the next alarm (or hello) tries again.
export async function dispatchFromD1(deps: SelfDispatchDeps, agentId: string, now: number): Promise<void> {
  const { env, store, now: clock } = deps;
  let targets;
  try {
    targets = await undispatchedTargets(env, { agentId, createdBefore: now - SELF_DISPATCH_AFTER_MS }, 20);
  } catch (e) {
    console.error(`AgentChannel ${agentId}: looking up undispatched targets failed (next alarm retries):`, e);
    return;
  }
  for (const t of targets) {
    store(deployCommand(t), clock(), t.waves > 1);
    try {
      const { canceled } = await markDispatched(env, t, clock());
      // Canceled between the lookup and the mark: the cancel follows the deploy at once.
      if (canceled) {
        store({ type: "cancel", id: cancelCommandIdFor(t.deploymentId, agentId), deploymentId: t.deploymentId }, clock());
        await markCancelSent(env.DB, t.deploymentId, agentId, clock());
      }
    } catch (e) {
      console.error(`AgentChannel ${agentId}: stored ${t.commandId} but could not mark it dispatched (harmless repeat later):`, e);
    }
  }
}
