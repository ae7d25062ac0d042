// Registration tokens (admin) and agent registration: a single-use token buys
// an agent its own credential, shown once and stored only as a hash. With `replace`
// the new agent takes over the name of a revoked or offline agent (a rebuilt machine).
import { and, desc, eq, gt, isNull, sql, type SQL } from "drizzle-orm";
import { registerRequest, type RegisterResponse } from "../../schema/agent-api.ts";
import { createRegistrationTokenBody } from "../../schema/api.ts";
import { agents, registrationTokens } from "../../schema/d1.ts";
import { refuse, requireApiRole } from "../auth.ts";
import { readJson } from "../body.ts";
import { randomToken, sha256Hex } from "../crypto.ts";
import { isUniqueViolation } from "../../d1/unique-violation.ts";
import { d1, prepared } from "../../d1/db.ts";
import type { Env } from "../env.ts";
import { HttpError } from "../http-errors.ts";
import { json } from "../../schema/http.ts";
import { revokedStatements } from "../../d1/projection.ts";
import { endChannelWork } from "./agents.ts";

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

// The agent holding a name: the end of its chain of replacements (replaced_by IS NULL),
// the live one if there is one. After a revoke the name stays held by the revoked agent
// until `register --replace` takes it over.
type Holder = { id: string; status: "online" | "offline"; revokedAt: number | null };

async function nameHolder(env: Env, name: string): Promise<Holder | undefined> {
  return d1(env)
    .select({ id: agents.id, status: agents.status, revokedAt: agents.revokedAt })
    .from(agents)
    .where(and(eq(agents.name, name), isNull(agents.replacedBy)))
    .orderBy(sql`${agents.revokedAt} IS NULL DESC`, desc(agents.createdAt))
    .get();
}

function nameTaken(name: string, holder: Holder | undefined, replace: boolean): HttpError {
  if (replace && holder?.revokedAt === null && holder.status === "online") {
    return new HttpError(409, `agent '${name}' is online: stop it (or revoke it) before replacing it`);
  }
  let hint = "";
  if (!replace && holder?.revokedAt != null) hint = " (revoked: register with --replace to take its name)";
  else if (!replace && holder?.status === "offline") hint = " (offline: register with --replace to take over its name)";
  return new HttpError(409, `an agent named '${name}' already exists${hint}`);
}

// SQLite names the column of a NOT NULL failure (D1: "NOT NULL constraint failed: agents.name").
function notNullViolation(err: unknown, column: string): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e.message.includes(`NOT NULL constraint failed: ${column}`)) return true;
  }
  return false;
}

export async function registerAgent(request: Request, env: Env): Promise<Response> {
  const body = await readJson(request, registerRequest);
  const replace = body.replace === true;
  const tokenHash = await sha256Hex(body.token);
  const agentId = crypto.randomUUID();
  const credential = randomToken();
  const credentialHash = await sha256Hex(credential);
  const now = Date.now();
  const holder = await nameHolder(env, body.name);
  if (holder && (!replace || (holder.revokedAt === null && holder.status === "online"))) {
    // Only a holder of a usable token learns that the name exists.
    if (!(await tokenUsable(env, tokenHash, now))) return refuse(request, env, BAD_TOKEN);
    throw nameTaken(body.name, holder, replace);
  }
  const replacing = replace ? holder : undefined;
  const tokenUsedByUs = sql`(SELECT used_at FROM registration_tokens WHERE token_hash = ${tokenHash} AND used_by_agent_id = ${agentId})`;
  try {
    // One atomic batch: the token is consumed only if the agent row is created, and
    // the agent row is created only by the request that consumed the token. The
    // insert aborts the whole batch (a NOT NULL failure rolls it back) when the token
    // was not consumed by this request (created_at: the token's used_at) or another
    // agent still holds the name (name) — so the replaced agent's revoke below, which
    // is not conditional itself, happens only together with the registration.
    await env.DB.batch([
      prepared(env.DB, sql`UPDATE registration_tokens SET used_at = ${now}, used_by_agent_id = ${agentId}
                  WHERE token_hash = ${tokenHash} AND used_at IS NULL AND expires_at > ${now}`),
      ...(replacing ? replaceStatements(env, replacing, agentId, now, tokenUsedByUs) : []),
      prepared(env.DB, sql`INSERT INTO agents (id, name, credential_hash, status, version, hostname, created_at, tags)
                 VALUES (${agentId},
                         CASE WHEN EXISTS (SELECT 1 FROM agents WHERE name = ${body.name} AND replaced_by IS NULL) THEN NULL ELSE ${body.name} END,
                         ${credentialHash}, 'offline', ${body.version}, ${body.hostname ?? null}, ${tokenUsedByUs}, ${JSON.stringify(body.tags ?? [])})`),
    ]);
  } catch (e) {
    // SQLite checks NOT NULL in column order, name before created_at: a bad token shows
    // here only when the name was free; with a taken name it is caught just below.
    if (notNullViolation(e, "agents.created_at")) return refuse(request, env, BAD_TOKEN);
    if (!notNullViolation(e, "agents.name") && !isUniqueViolation(e, "agents.name")) throw e;
    // The batch rolled back: someone took the name, or its agent came online, meanwhile.
    if (!(await tokenUsable(env, tokenHash, now))) return refuse(request, env, BAD_TOKEN);
    throw nameTaken(body.name, await nameHolder(env, body.name), replace);
  }
  if (replacing && replacing.revokedAt === null) {
    // D1 already refuses the old credential and has ended its steps; the agent was
    // offline, so its channel has no socket to close. A failure here must not cost
    // the new agent its credential (shown only in this answer): the channel also
    // learns of the revoke from D1 at its next presence write (docs/protocol.md §Revoke).
    try {
      await endChannelWork(env, replacing.id);
    } catch (e) {
      console.error(`registering ${agentId} as '${body.name}': the replaced agent ${replacing.id}'s channel could not end its open work:`, e);
    }
  }
  // The agent pins these keys (docs/agent-lifecycle.md, "Key pinning"); without any, it
  // registers but can never be upgraded until registered again, and says so.
  const releaseKeys = env.OUTPOST_RELEASE_PUBLIC_KEYS?.trim() ? env.OUTPOST_RELEASE_PUBLIC_KEYS : "";
  return json({ agentId, credential, releaseKeys } satisfies Required<RegisterResponse>, 201);
}

// `register --replace` over the name's holder: revoke it (unless it already is) and
// point it at its successor, but only if it is still offline or revoked and not replaced
// meanwhile; otherwise it keeps the name and the insert fails. A live holder also gets
// everything DELETE /api/v1/agents/:id does in D1 (its open steps canceled).
function replaceStatements(env: Env, old: Holder, agentId: string, now: number, tokenUsedByUs: SQL): D1PreparedStatement[] {
  const mark = prepared(
    env.DB,
    sql`UPDATE agents SET revoked_at = COALESCE(revoked_at, ${now}), replaced_by = ${agentId}
         WHERE id = ${old.id} AND replaced_by IS NULL AND (revoked_at IS NOT NULL OR status = 'offline')
           AND ${tokenUsedByUs} IS NOT NULL`,
  );
  return old.revokedAt === null ? [mark, ...revokedStatements(env.DB, old.id, now)] : [mark];
}

async function tokenUsable(env: Env, tokenHash: string, now: number): Promise<boolean> {
  const row = await d1(env)
    .select({ tokenHash: registrationTokens.tokenHash })
    .from(registrationTokens)
    .where(and(eq(registrationTokens.tokenHash, tokenHash), isNull(registrationTokens.usedAt), gt(registrationTokens.expiresAt, now)))
    .get();
  return row !== undefined;
}
