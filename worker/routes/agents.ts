// /api/v1/agents: list, one agent with its channel's state, tags and properties, revoke; and the chaos
// suite's eviction hook (only with OUTPOST_TEST_HOOKS=1).
import { and, asc, eq, isNull, sql } from "drizzle-orm";
import { d1, prepared } from "../../d1/db.ts";
import { revokedStatements } from "../../d1/projection.ts";
import { patchAgentBody, pathId, type AgentView, type Properties } from "../../schema/api.ts";
import { agents } from "../../schema/d1.ts";
import { errorResponse, json } from "../../schema/http.ts";
import { requireApiRole } from "../auth.ts";
import { parseWith, readJson } from "../body.ts";
import { channelOf } from "../../durable-objects/channels.ts";
import type { Env } from "../env.ts";
import { HttpError } from "../http-errors.ts";
import type { ApiRequest } from "../api-request.ts";

const VIEW_COLUMNS = {
  id: agents.id,
  name: agents.name,
  status: agents.status,
  version: agents.version,
  lastSeenAt: agents.lastSeenAt,
  tags: agents.tags,
  properties: agents.properties,
};

type ViewRow = { id: string; name: string; status: "online" | "offline"; version: string | null; lastSeenAt: number | null; tags: string; properties: string };
const toView = (r: ViewRow): AgentView => ({
  ...r,
  lastSeenAt: r.lastSeenAt === null ? null : new Date(r.lastSeenAt).toISOString(),
  tags: JSON.parse(r.tags) as string[],
  properties: JSON.parse(r.properties) as Properties,
});


// Revoked agents are gone from the API (their name stays taken).
async function liveAgent(env: Env, request: ApiRequest): Promise<ViewRow> {
  const id = parseWith(pathId, request.params.id, "agent id");
  const row = await d1(env).select(VIEW_COLUMNS).from(agents).where(and(eq(agents.id, id), isNull(agents.revokedAt))).get();
  if (!row) throw new HttpError(404, `agent ${id} not found`);
  return row;
}

export async function listAgents(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "viewer");
  const rows = await d1(env).select(VIEW_COLUMNS).from(agents).where(isNull(agents.revokedAt)).orderBy(asc(agents.name)).all();
  return json({ agents: rows.map(toView) });
}

// docs/protocol.md §Resync: the view plus what the agent's DO holds, so a test can
// compare ledger and journal.
export async function getAgent(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "viewer");
  const row = await liveAgent(env, request);
  const status = await channelOf(env, row.id).status(row.id);
  return json({ ...toView(row), channel: status });
}

// Tags and properties are replaced whole by what is given; a deployment already created
// keeps the targets and agent properties it resolved then.
export async function patchAgent(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "admin");
  const row = await liveAgent(env, request);
  const body = await readJson(request, patchAgentBody);
  const set: { tags?: string; properties?: string } = {};
  if (body.tags !== undefined) set.tags = JSON.stringify(body.tags);
  if (body.properties !== undefined) set.properties = JSON.stringify(body.properties);
  const updated = await d1(env).update(agents).set(set).where(and(eq(agents.id, row.id), isNull(agents.revokedAt))).returning(VIEW_COLUMNS).get();
  if (!updated) throw new HttpError(404, `agent ${row.id} not found`);
  return json(toView(updated));
}

// docs/protocol.md §Revoke. Repeatable: a second call answers with the first revokedAt
// (and ends any work dispatched in between). D1 is the truth: one batch refuses the
// credential and cancels the agent's open steps, so whatever happens to the call to
// the agent's channel, nothing the agent sends afterwards changes anything (every
// later write checks revoked_at).
export async function revokeAgent(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "admin");
  const id = parseWith(pathId, request.params.id, "agent id");
  const now = Date.now();
  const db = d1(env);
  await env.DB.batch([
    prepared(env.DB, sql`UPDATE agents SET revoked_at = ${now} WHERE id = ${id} AND revoked_at IS NULL`),
    ...revokedStatements(env.DB, id, now),
  ]);
  const row = await db.select({ id: agents.id, name: agents.name, revokedAt: agents.revokedAt }).from(agents).where(eq(agents.id, id)).get();
  if (!row || row.revokedAt === null) throw new HttpError(404, `agent ${id} not found`);
  // D1 already refuses the credential and has ended the steps; the DO closes the
  // sockets, releases long-polls and ends the commands in its ledger.
  try {
    await channelOf(env, id).revoke(id);
  } catch (e) {
    console.error(`revoking agent ${id}: its channel could not end the open work:`, e);
    throw new HttpError(503, "the agent is revoked but ending its open work failed; repeat the request", {
      id: row.id,
      name: row.name,
      revokedAt: new Date(row.revokedAt).toISOString(),
    });
  }
  return json({ id: row.id, name: row.name, revokedAt: new Date(row.revokedAt).toISOString() });
}

// Chaos-suite hook: resets the agent's DO the way an eviction does.
export async function evictAgentChannel(request: ApiRequest, env: Env): Promise<Response> {
  if (env.OUTPOST_TEST_HOOKS !== "1") return errorResponse(404, "not found");
  await requireApiRole(request, env, "admin");
  const row = await liveAgent(env, request);
  try {
    await channelOf(env, row.id).evict();
  } catch (e) {
    // Expected: ctx.abort() fails the call that caused it. Anything else is a real error.
    if (!String(e instanceof Error ? e.message : e).includes("evicted by test hook")) throw e;
  }
  return json({ evicted: true });
}
