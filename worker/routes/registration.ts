// Registration tokens (admin) and agent registration: a single-use token buys
// an agent its own credential, shown once and stored only as a hash.
import { and, eq, gt, isNull, sql } from "drizzle-orm";
import { registerRequest, type RegisterResponse } from "../../schema/agent-api.ts";
import { createRegistrationTokenBody } from "../../schema/api.ts";
import { registrationTokens } from "../../schema/d1.ts";
import { refuse, requireApiRole } from "../auth.ts";
import { readJson } from "../body.ts";
import { randomToken, sha256Hex } from "../crypto.ts";
import { isUniqueViolation } from "../../d1/unique-violation.ts";
import { d1, prepared } from "../../d1/db.ts";
import type { Env } from "../env.ts";
import { HttpError } from "../http-errors.ts";
import { json } from "../../schema/http.ts";

const DEFAULT_TOKEN_TTL_SECONDS = 24 * 3600;

export async function createRegistrationToken(request: Request, env: Env): Promise<Response> {
  await requireApiRole(request, env, "admin");
  const body = await readJson(request, createRegistrationTokenBody, { emptyAs: {} });
  const token = randomToken();
  const now = Date.now();
  await d1(env)
    .insert(registrationTokens)
    .values({ tokenHash: await sha256Hex(token), createdAt: now, expiresAt: now + (body.ttlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS) * 1000 })
    .run();
  return json({ token }, 201);
}

const BAD_TOKEN = "registration token is invalid, expired or already used";

export async function registerAgent(request: Request, env: Env): Promise<Response> {
  const body = await readJson(request, registerRequest);
  const tokenHash = await sha256Hex(body.token);
  const agentId = crypto.randomUUID();
  const credential = randomToken();
  const credentialHash = await sha256Hex(credential);
  const now = Date.now();
  try {
    // One atomic batch: the token is consumed only if the agent row is created,
    // and the agent row is created only by the request that consumed the token.
    const [, inserted] = await env.DB.batch([
      prepared(env.DB, sql`UPDATE registration_tokens SET used_at = ${now}, used_by_agent_id = ${agentId}
                  WHERE token_hash = ${tokenHash} AND used_at IS NULL AND expires_at > ${now}`),
      prepared(env.DB, sql`INSERT INTO agents (id, name, credential_hash, status, version, hostname, created_at, tags)
                 SELECT ${agentId}, ${body.name}, ${credentialHash}, 'offline', ${body.version}, ${body.hostname ?? null}, ${now}, ${JSON.stringify(body.tags ?? [])}
                  WHERE EXISTS (SELECT 1 FROM registration_tokens WHERE token_hash = ${tokenHash} AND used_by_agent_id = ${agentId})`),
    ]);
    if (inserted.meta.changes !== 1) return refuse(request, env, BAD_TOKEN);
  } catch (e) {
    if (!isUniqueViolation(e, "agents.name")) throw e;
    // The batch rolled back. Only a holder of a usable token learns that the name exists.
    if (!(await tokenUsable(env, tokenHash, now))) return refuse(request, env, BAD_TOKEN);
    throw new HttpError(409, `an agent named '${body.name}' already exists`);
  }
  return json({ agentId, credential } satisfies RegisterResponse, 201);
}

async function tokenUsable(env: Env, tokenHash: string, now: number): Promise<boolean> {
  const row = await d1(env)
    .select({ tokenHash: registrationTokens.tokenHash })
    .from(registrationTokens)
    .where(and(eq(registrationTokens.tokenHash, tokenHash), isNull(registrationTokens.usedAt), gt(registrationTokens.expiresAt, now)))
    .get();
  return row !== undefined;
}
