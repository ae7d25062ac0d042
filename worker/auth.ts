// Who is calling: admins/viewers on /api/v1 (bearer token), agents on /agent/v1
// (bearer credential). Identity always comes from the secret, never from the URL.
import { and, eq, isNull } from "drizzle-orm";
import { agents, apiTokens } from "../schema/d1.ts";
import { secretEquals, sha256Hex } from "./crypto.ts";
import { d1 } from "./db.ts";
import type { Env } from "./env.ts";
import { HttpError } from "./http-errors.ts";

export type Role = "admin" | "viewer";

export function bearerToken(request: Request): string {
  const header = request.headers.get("authorization");
  if (!header) throw new HttpError(401, "missing Authorization: Bearer <token> header");
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) throw new HttpError(401, "Authorization header must be 'Bearer <token>'");
  return m[1];
}

// Viewers may read; anything that changes state needs admin.
export async function requireApiRole(request: Request, env: Env, needs: Role): Promise<Role> {
  const token = bearerToken(request);
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
  if (!role) throw new HttpError(401, "invalid API token");
  if (needs === "admin" && role !== "admin") throw new HttpError(403, "this API token may only read");
  return role;
}

export type AgentIdentity = { id: string; name: string };

export async function requireAgent(request: Request, env: Env): Promise<AgentIdentity> {
  const credential = bearerToken(request);
  const row = await d1(env)
    .select({ id: agents.id, name: agents.name, revokedAt: agents.revokedAt })
    .from(agents)
    .where(eq(agents.credentialHash, await sha256Hex(credential)))
    .get();
  if (!row) throw new HttpError(401, "invalid agent credential");
  if (row.revokedAt !== null) throw new HttpError(401, "this agent has been revoked");
  return { id: row.id, name: row.name };
}
