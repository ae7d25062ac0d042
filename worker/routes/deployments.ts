import { z } from "zod";
import { createDeploymentBody } from "../../schema/api.ts";
import { requireApiRole } from "../auth.ts";
import { parseWith, readJson, singleQuery } from "../body.ts";
import { d1 } from "../db.ts";
import { createDeployment } from "../deployments/create.ts";
import { dispatchAll, type DispatchTarget } from "../deployments/dispatch.ts";
import { findKey, idempotencyKey, replay, requestHash } from "../deployments/idempotency.ts";
import { isUniqueViolation } from "../d1-errors.ts";
import { getDeploymentView, listDeploymentViews } from "../deployments/views.ts";
import type { Env } from "../env.ts";
import { HttpError, json } from "../http-errors.ts";
import { readLog } from "../logs.ts";
import type { ApiRequest } from "../router.ts";

const listQuery = z.strictObject({ limit: z.coerce.number().int().min(1).max(200).default(50) });
const pathId = z.string().min(1).max(200);

export async function postDeployment(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "admin");
  const key = idempotencyKey(request);
  const body = await readJson(request, createDeploymentBody);
  if (key === null) return created(env, await createDeployment(d1(env), env.DB, body, Date.now()));

  // docs/protocol.md §Idempotent requests.
  const hash = await requestHash(body);
  const known = await findKey(env, key);
  if (known) return replayed(await replay(env, key, known, hash));
  try {
    return created(env, await createDeployment(d1(env), env.DB, body, Date.now(), { key, requestHash: hash }));
  } catch (e) {
    if (!isUniqueViolation(e, "idempotency_keys.key")) throw e;
    // A concurrent request with this key won the race; its batch (and deployment) committed.
    const winner = await findKey(env, key);
    if (!winner) throw new Error(`Idempotency-Key '${key}' collided but no row is stored`, { cause: e });
    return replayed(await replay(env, key, winner, hash));
  }
}

// Awaited so that a 201 normally means "every agent has its command"; a failed
// dispatch is repeated later (cron, the agent's DO, a retried request), the
// deployment is accepted either way.
async function created(env: Env, d: { id: string; targets: DispatchTarget[] }): Promise<Response> {
  await dispatchAll(env, d.targets);
  return json({ id: d.id }, 201);
}

function replayed(id: string): Response {
  return json({ id }, 201, { "idempotent-replayed": "true" });
}

export async function getDeployments(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "viewer");
  const { limit } = parseWith(listQuery, singleQuery(request.query), "query");
  return json({ deployments: await listDeploymentViews(env.DB, limit) });
}

export async function getDeployment(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "viewer");
  const id = parseWith(pathId, request.params.id, "deployment id");
  const view = await getDeploymentView(env.DB, id);
  if (!view) throw new HttpError(404, `deployment ${id} not found`);
  return json(view);
}

export async function getStepLog(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "viewer");
  const id = parseWith(pathId, request.params.id, "deployment id");
  const stepId = parseWith(pathId, request.params.stepId, "step id");
  const step = await env.DB.prepare("SELECT 1 AS found FROM deployment_steps WHERE id = ? AND deployment_id = ?").bind(stepId, id).first();
  if (!step) throw new HttpError(404, `step ${stepId} of deployment ${id} not found`);
  const bytes = await readLog(env, stepId);
  return new Response(new TextDecoder("utf-8").decode(bytes), { status: 200, headers: { "content-type": "text/plain; charset=utf-8" } });
}
