import { createDeploymentBody, listDeploymentsQuery, pathId } from "../../schema/api.ts";
import { FINAL_DEPLOYMENT_STATUSES } from "../../schema/steps.ts";
import { requireApiRole } from "../auth.ts";
import { parseWith, readJson, singleQuery } from "../body.ts";
import { d1 } from "../../d1/db.ts";
import { createDeployment, type CreatedDeployment } from "../deployments/create.ts";
import { cancelDeployment } from "../../d1/rollout.ts";
import { coordinatorOf } from "../../durable-objects/channels.ts";
import { dispatchAll, INLINE_DISPATCH_TARGETS } from "../../durable-objects/dispatch.ts";
import { findKey, idempotencyKey, replay, requestHash } from "../deployments/idempotency.ts";
import { isUniqueViolation } from "../../d1/unique-violation.ts";
import { decodeCursor, getDeploymentView, listDeploymentSummaries } from "../deployments/views.ts";
import type { Env } from "../env.ts";
import { HttpError } from "../http-errors.ts";
import { json } from "../../schema/http.ts";
import type { ApiRequest } from "../api-request.ts";


export async function postDeployment(request: ApiRequest, env: Env, ctx: ExecutionContext): Promise<Response> {
  await requireApiRole(request, env, "admin");
  const key = idempotencyKey(request);
  const body = await readJson(request, createDeploymentBody);
  if (key === null) return created(env, ctx, await createDeployment(d1(env), env.DB, body, Date.now()));

  // docs/protocol.md §Idempotent requests.
  const hash = await requestHash(body);
  const known = await findKey(env, key, Date.now());
  if (known) return replayed(env, ctx, await replay(env, key, known, hash));
  try {
    return created(env, ctx, await createDeployment(d1(env), env.DB, body, Date.now(), { key, requestHash: hash }));
  } catch (e) {
    if (!isUniqueViolation(e, "idempotency_keys.key")) throw e;
    // A concurrent request with this key won the race; its batch (and deployment) committed.
    const winner = await findKey(env, key, Date.now());
    if (!winner) throw new Error(`Idempotency-Key '${key}' collided but no row is stored`, { cause: e });
    return replayed(env, ctx, await replay(env, key, winner, hash));
  }
}

// A small first wave is dispatched before the answer, so that a 201 normally means
// "every agent of the first wave has its command" (the quickest path to a running step);
// a failed dispatch is repeated later (cron, the agent's DO, a retried request), the
// deployment is accepted either way. A larger one, and later waves, are the
// coordinator's: it is poked now, and its alarm carries the dispatch and the rollout on,
// so the POST answers at once whatever the number of agents (docs/protocol.md §Dispatch).
async function created(env: Env, ctx: ExecutionContext, d: CreatedDeployment): Promise<Response> {
  const inline = d.firstWave.length <= INLINE_DISPATCH_TARGETS;
  if (inline) await dispatchAll(env, d.firstWave);
  if (d.waves > 1 || !inline) ctx.waitUntil(pokeCoordinator(env, d.id));
  return json({ id: d.id }, 201);
}

async function pokeCoordinator(env: Env, id: string): Promise<void> {
  try {
    await coordinatorOf(env, id).poke(id);
  } catch (e) {
    console.error(`deployment ${id}: its coordinator could not be reached (the cron pokes it again):`, e);
  }
}

// docs/api.md §Cancel. D1 records the cancel and ends the steps no agent holds yet in
// one batch; the coordinator then stores a cancel command for every agent holding the
// others (an offline agent gets it when it returns). Repeatable: 202 again.
export async function postCancel(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "admin");
  const id = parseWith(pathId, request.params.id, "deployment id");
  await cancelDeployment(env.DB, id, Date.now());
  const row = await env.DB.prepare("SELECT status, canceled_at AS canceledAt FROM deployments WHERE id = ?").bind(id).first<{ status: string; canceledAt: number | null }>();
  if (!row) throw new HttpError(404, `deployment ${id} not found`);
  if (row.canceledAt === null) {
    const ended = (FINAL_DEPLOYMENT_STATUSES as readonly string[]).includes(row.status);
    throw new HttpError(409, `deployment ${id} has already ended (${row.status}); there is nothing to cancel`, ended ? { status: row.status } : {});
  }
  await pokeCoordinator(env, id);
  return json({ id, status: row.status, canceledAt: new Date(row.canceledAt).toISOString() }, 202);
}

// The first request may have been cut before its coordinator was poked.
function replayed(env: Env, ctx: ExecutionContext, id: string): Response {
  ctx.waitUntil(pokeCoordinator(env, id));
  return json({ id }, 201, { "idempotent-replayed": "true" });
}

export async function getDeployments(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "viewer");
  const { limit, before } = parseWith(listDeploymentsQuery, singleQuery(request.query), "query");
  return json(await listDeploymentSummaries(env.DB, limit, before === undefined ? null : decodeCursor(before)));
}

export async function getDeployment(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "viewer");
  const id = parseWith(pathId, request.params.id, "deployment id");
  const view = await getDeploymentView(env.DB, id);
  if (!view) throw new HttpError(404, `deployment ${id} not found`);
  return json(view);
}
