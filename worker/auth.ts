// Who is calling: admins/viewers on /api/v1 (bearer token), agents on /agent/v1
// (bearer credential). Identity always comes from the secret, never from the URL.
import { and, eq, isNull } from "drizzle-orm";
import { AGENT_REVOKED, REVOKED_ERROR } from "../schema/agent-api.ts";
import { agents, apiTokens } from "../schema/d1.ts";
import { countAuthFailure } from "./auth-failures.ts";
import { secretEquals, sha256Hex } from "./crypto.ts";
import { d1 } from "../d1/db.ts";
import type { Env } from "./env.ts";
import { HttpError } from "./http-errors.ts";

export type Role = "admin" | "viewer";

// A 401 that counts against the caller's address (worker/auth-failures.ts).
export async function refuse(request: Request, env: Env, message: string, extra: Record<string, unknown> = {}): Promise<never> {
  await countAuthFailure(request, env);
  throw new HttpError(401, message, extra);
}

export async function bearerToken(request: Request, env: Env): Promise<string> {
  const header = request.headers.get("authorization");
  if (!header) return refuse(request, env, "missing Authorization: Bearer <token> header");
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) return refuse(request, env, "Authorization header must be 'Bearer <token>'");
  return m[1];
}

// Viewers may read; anything that changes state needs admin.
export async function requireApiRole(request: Request, env: Env, needs: Role): Promise<Role> {
  const token = await bearerToken(request, env);
  let role: Role | null = null;
  if (env.OUTPOST_ADMIN_TOKEN && (await secretEquals(token, env.OUTPOST_ADMIN_TOKEN))) {
    role = "admin";
  } else {
    const row = await d1(env)
      .select({ role: apiTokens.role })
      .from(apiTokens)
      .where(and(eq(apiTokens.tokenHash, await sha256Hex(token)), isNull(apiTokens.revokedAt)))
      .get();
    role = row?.role ?? null;
  }
  if (!role) return refuse(request, env, "invalid API token");
  if (needs === "admin" && role !== "admin") throw new HttpError(403, "this API token may only read");
  return role;
}

export type AgentIdentity = { id: string; name: string };

// docs/agent-api.md: only a revoked agent's 401 says `code: "agent-revoked"` (stop for
// good); an unknown credential is a plain 401 the agent retries.
export async function requireAgent(request: Request, env: Env): Promise<AgentIdentity> {
  const credential = await bearerToken(request, env);
  return identify(request, env, await sha256Hex(credential));
}

async function identify(request: Request, env: Env, credentialHash: string): Promise<AgentIdentity> {
  const row = await d1(env)
    .select({ id: agents.id, name: agents.name, revokedAt: agents.revokedAt })
    .from(agents)
    .where(eq(agents.credentialHash, credentialHash))
    .get();
  if (!row) return refuse(request, env, "invalid agent credential");
  if (row.revokedAt !== null) return refuse(request, env, REVOKED_ERROR, { code: AGENT_REVOKED });
  return { id: row.id, name: row.name };
}

// For the requests an agent makes most — pulls, reports, its WebSocket — whose handling
// happens in the agent's own channel, which refuses everything from a revoked agent by
// itself (durable-objects/agent-channel.ts; told by the revoke, or finding it in D1 at
// its next sweep). So what D1 said of a credential can be remembered for a while in this
// isolate: credential → agent never changes, and a revoke takes effect there at once.
// Only confirmed credentials are kept; an unknown one is looked up (and counted) each time.
const KNOWN_AGENTS_MAX = 10_000;
export const KNOWN_AGENT_MS = 60_000;
const knownAgents = new Map<string, AgentIdentity & { until: number }>();

export async function requireAgentForChannel(request: Request, env: Env, now = Date.now()): Promise<AgentIdentity> {
  const hash = await sha256Hex(await bearerToken(request, env));
  const known = knownAgents.get(hash);
  if (known && known.until > now) return { id: known.id, name: known.name };
  const agent = await identify(request, env, hash);
  knownAgents.delete(hash); // re-inserted last: the oldest entry is the first evicted
  if (knownAgents.size >= KNOWN_AGENTS_MAX) knownAgents.delete(knownAgents.keys().next().value!);
  knownAgents.set(hash, { ...agent, until: now + KNOWN_AGENT_MS });
  return agent;
}
