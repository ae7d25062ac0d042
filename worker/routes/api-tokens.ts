// /api/v1/api-tokens (admin): API tokens for people and CI, each with a role. The
// secret is shown once, when created, and stored only as a SHA-256 hash; a revoked
// token is refused at once and disappears from the list.
import { and, asc, eq, isNull } from "drizzle-orm";
import { createApiTokenBody, type ApiTokenView, pathId } from "../../schema/api.ts";
import { apiTokens } from "../../schema/d1.ts";
import { requireApiRole } from "../auth.ts";
import { parseWith, readJson } from "../body.ts";
import { randomToken, sha256Hex } from "../crypto.ts";
import { d1 } from "../../d1/db.ts";
import type { Env } from "../env.ts";
import { HttpError } from "../http-errors.ts";
import { json } from "../../schema/http.ts";
import type { ApiRequest } from "../api-request.ts";

// Recognisable in logs and secret scanners, like the admin token's "opa_".
const TOKEN_PREFIX = "opt_";

export async function createApiToken(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "admin");
  const body = await readJson(request, createApiTokenBody);
  const id = crypto.randomUUID();
  const token = TOKEN_PREFIX + randomToken();
  await d1(env)
    .insert(apiTokens)
    .values({ id, name: body.name, role: body.role, tokenHash: await sha256Hex(token), createdAt: Date.now() })
    .run();
  return json({ id, token }, 201);
}

export async function listApiTokens(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "admin");
  const rows = await d1(env)
    .select({ id: apiTokens.id, name: apiTokens.name, role: apiTokens.role, createdAt: apiTokens.createdAt })
    .from(apiTokens)
    .where(isNull(apiTokens.revokedAt))
    .orderBy(asc(apiTokens.createdAt), asc(apiTokens.id))
    .all();
  const tokens: ApiTokenView[] = rows.map((r) => ({ ...r, createdAt: new Date(r.createdAt).toISOString() }));
  return json({ tokens });
}

// 204 once revoked; repeating it is a 404 (the token is gone from the API).
export async function revokeApiToken(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "admin");
  const id = parseWith(pathId, request.params.id, "token id");
  const res = await d1(env).update(apiTokens).set({ revokedAt: Date.now() }).where(and(eq(apiTokens.id, id), isNull(apiTokens.revokedAt))).run();
  if (res.meta.changes === 0) throw new HttpError(404, `API token ${id} not found`);
  return new Response(null, { status: 204 });
}
