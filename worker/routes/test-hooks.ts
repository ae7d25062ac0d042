// Routes that exist only with OUTPOST_TEST_HOOKS=1 (the chaos suite, the benches); a 404
// otherwise. Admin token required all the same.
import { z } from "zod";
import { channelOf } from "../../durable-objects/channels.ts";
import { errorResponse, json } from "../../schema/http.ts";
import { agentKey, requireLiveAgent } from "../agent-lookup.ts";
import type { ApiRequest } from "../api-request.ts";
import { requireApiRole } from "../auth.ts";
import { readJson } from "../body.ts";
import type { Env } from "../env.ts";

const hooksOn = (env: Env) => env.OUTPOST_TEST_HOOKS === "1";

// Resets the agent's DO the way an eviction does (chaos suite).
export async function evictAgentChannel(request: ApiRequest, env: Env): Promise<Response> {
  if (!hooksOn(env)) return errorResponse(404, "not found");
  await requireApiRole(request, env, "admin");
  const row = await requireLiveAgent(env, agentKey(request.params.id));
  try {
    await channelOf(env, row.id).evict();
  } catch (e) {
    // Expected: ctx.abort() fails the call that caused it. Anything else is a real error.
    if (!String(e instanceof Error ? e.message : e).includes("evicted by test hook")) throw e;
  }
  return json({ evicted: true });
}

// Stores `count` one-step commands (`true`) of made-up deployments in the agent's ledger
// in one call, for `npm run bench`'s ledger throughput: store, notify, pull, report,
// without D1 rows (their projection changes no row).
const syntheticBody = z.strictObject({ count: z.int().min(1).max(20_000) });

export async function enqueueSynthetic(request: ApiRequest, env: Env): Promise<Response> {
  if (!hooksOn(env)) return errorResponse(404, "not found");
  await requireApiRole(request, env, "admin");
  const row = await requireLiveAgent(env, agentKey(request.params.id));
  const { count } = await readJson(request, syntheticBody);
  const commands = Array.from({ length: count }, () => {
    const deploymentId = crypto.randomUUID();
    return {
      type: "deploy" as const,
      id: `bench-${deploymentId}`,
      deploymentId,
      agentLostAfterSeconds: 3600,
      steps: [{ stepId: crypto.randomUUID(), position: 0, name: "noop", type: "shell" as const, command: "true", timeoutSeconds: null, retry: "never" as const }],
    };
  });
  const { head } = await channelOf(env, row.id).enqueueMany(row.id, commands);
  return json({ stored: count, head });
}
