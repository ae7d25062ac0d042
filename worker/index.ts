// Worker entry: the HTTP API (management + agent) and the cron that repeats
// interrupted dispatches. Static web assets are served before the Worker runs.
import type { Env } from "./env.ts";
import { pokeCoordinators, redispatchStale } from "./deployments/dispatch.ts";
import { progressUpgradeRollouts } from "../durable-objects/upgrade-rollouts.ts";
import { purgeExpiredKeys } from "./deployments/idempotency.ts";
import { buildRouter } from "./router.ts";

export { AgentChannel } from "../durable-objects/agent-channel.ts";
export { DeploymentCoordinator } from "../durable-objects/deployment-coordinator.ts";

const router = buildRouter();

export default {
  fetch(request, env, ctx) {
    return router.fetch(request, env, ctx);
  },

  async scheduled(_controller, env) {
    const { attempted, failed } = await redispatchStale(env, Date.now());
    if (attempted > 0) console.log(`cron: re-dispatched ${attempted - failed} of ${attempted} interrupted dispatch(es)`);
    await pokeCoordinators(env);
    await progressUpgradeRollouts(env).catch((e: unknown) => console.error("cron: upgrade rollouts not moved on:", e));
    await purgeExpiredKeys(env, Date.now());
  },
} satisfies ExportedHandler<Env>;
