// Finding an agent from a /api/v1/agents/:id path segment. Users think in names, so
// the segment is an agent's id or its name (docs/api.md §Agents). Only live agents are
// found: a revoked agent's name may belong to its replacement by now, and a revoked
// agent is gone from the API (its steps stay in its deployments, under its id).
import { and, desc, eq, isNull, or, sql } from "drizzle-orm";
import { d1 } from "../d1/db.ts";
import { pathId, type AgentView, type Properties } from "../schema/api.ts";
import { agents } from "../schema/d1.ts";
import { parseWith } from "./body.ts";
import type { Env } from "./env.ts";
import { HttpError } from "./http-errors.ts";

export const AGENT_VIEW_COLUMNS = {
  id: agents.id,
  name: agents.name,
  status: agents.status,
  version: agents.version,
  lastSeenAt: agents.lastSeenAt,
  tags: agents.tags,
  properties: agents.properties,
};

export type AgentRow = { id: string; name: string; status: "online" | "offline"; version: string | null; lastSeenAt: number | null; tags: string; properties: string };

export const toAgentView = (r: AgentRow): AgentView => ({
  ...r,
  lastSeenAt: r.lastSeenAt === null ? null : new Date(r.lastSeenAt).toISOString(),
  tags: JSON.parse(r.tags) as string[],
  properties: JSON.parse(r.properties) as Properties,
});

// The path segment, checked like any other path id (a 400 when malformed).
export const agentKey = (raw: string | undefined): string => parseWith(pathId, raw, "agent id or name");

// The live agent with this id, else the live agent with this name (names are unique
// among live agents: schema/d1.ts agents_live_name). An id wins over a name because a
// name may look like another agent's id.
export async function findLiveAgent(env: Env, key: string): Promise<AgentRow | undefined> {
  return d1(env)
    .select(AGENT_VIEW_COLUMNS)
    .from(agents)
    .where(and(isNull(agents.revokedAt), or(eq(agents.id, key), eq(agents.name, key))))
    .orderBy(desc(sql`${agents.id} = ${key}`))
    .limit(1)
    .get();
}

export async function requireLiveAgent(env: Env, key: string): Promise<AgentRow> {
  const row = await findLiveAgent(env, key);
  if (!row) throw new HttpError(404, `agent ${key} not found`);
  return row;
}
