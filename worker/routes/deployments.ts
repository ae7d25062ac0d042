import { createDeploymentBody, listDeploymentsQuery, logRangeQuery, pathId } from "../../schema/api.ts";
import { requireApiRole } from "../auth.ts";
import { parseWith, readJson, singleQuery } from "../body.ts";
import { d1 } from "../../d1/db.ts";
import { createDeployment } from "../deployments/create.ts";
import type { DispatchTarget } from "../../d1/dispatch-targets.ts";
import { dispatchAll } from "../deployments/dispatch.ts";
import { findKey, idempotencyKey, replay, requestHash } from "../deployments/idempotency.ts";
import { isUniqueViolation } from "../../d1/unique-violation.ts";
import { decodeCursor, getDeploymentView, listDeploymentSummaries } from "../deployments/views.ts";
import type { Env } from "../env.ts";
import { HttpError } from "../http-errors.ts";
import { json } from "../../schema/http.ts";
import { readLogRange } from "../logs.ts";
import type { ApiRequest } from "../api-request.ts";


export async function postDeployment(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "admin");
  const key = idempotencyKey(request);
  const body = await readJson(request, createDeploymentBody);
  if (key === null) return created(env, await createDeployment(d1(env), env.DB, body, Date.now()));

  // docs/protocol.md §Idempotent requests.
  const hash = await requestHash(body);
  const known = await findKey(env, key, Date.now());
  if (known) return replayed(await replay(env, key, known, hash));
  try {
    return created(env, await createDeployment(d1(env), env.DB, body, Date.now(), { key, requestHash: hash }));
  } catch (e) {
    if (!isUniqueViolation(e, "idempotency_keys.key")) throw e;
    // A concurrent request with this key won the race; its batch (and deployment) committed.
    const winner = await findKey(env, key, Date.now());
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

// docs/api.md: at most `limit` bytes of the output from byte `offset` — raw bytes (a
// range may cut a UTF-8 character: readers decode across ranges), with the size so far
// and whether it is final, so a page can fetch only what is new.
export async function getStepLog(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "viewer");
  const id = parseWith(pathId, request.params.id, "deployment id");
  const stepId = parseWith(pathId, request.params.stepId, "step id");
  const { offset, limit } = parseWith(logRangeQuery, singleQuery(request.query), "query");
  const range = await readLogRange(env, id, stepId, offset, limit);
  if (!range) throw new HttpError(404, `step ${stepId} of deployment ${id} not found`);
  return new Response(range.bytes, {
    status: 200,
    headers: {
      "content-type": "text/plain; charset=utf-8",
      "x-log-size": String(range.size),
      "x-log-complete": String(range.complete),
      "cache-control": "no-store",
    },
  });
}
