// /api/v1/agents: list, one agent with its channel's state, tags and properties, revoke; and the chaos
// suite's eviction hook (only with OUTPOST_TEST_HOOKS=1). Every :id is an agent's id or name
// (worker/agent-lookup.ts).
import { and, asc, eq, isNull, sql } from "drizzle-orm";
import { d1, prepared } from "../../d1/db.ts";
import { revokedStatements } from "../../d1/projection.ts";
import { patchAgentBody, type AgentView } from "../../schema/api.ts";
import { agents } from "../../schema/d1.ts";
import { errorResponse, json } from "../../schema/http.ts";
import { requireApiRole } from "../auth.ts";
import { readJson } from "../body.ts";
import { channelOf } from "../../durable-objects/channels.ts";
import type { Env } from "../env.ts";
import { HttpError } from "../http-errors.ts";
import type { ApiRequest } from "../api-request.ts";
import { AGENT_VIEW_COLUMNS, agentKey, findLiveAgent, requireLiveAgent, toAgentView, type AgentRow } from "../agent-lookup.ts";
import { readConfig, readUpgrade, type ConfigView } from "../../d1/agent-config.ts";
import type { UpgradeView } from "../../schema/api.ts";
import { changeConfig } from "./agent-control.ts";

// The agents this one took over with `register --replace` (docs/api.md §Agents), the
// whole chain back (a name re-registered twice lists both), the latest first. A replaced
// agent is always revoked: the registration batch sets replaced_by and revoked_at together.
export type ReplacedAgent = { id: string; revokedAt: string };
export type AgentDetail = AgentView & { replaced: ReplacedAgent[]; config: ConfigView; upgrade: UpgradeView | null; channel: unknown };

async function replacedAgents(env: Env, id: string): Promise<ReplacedAgent[]> {
  const rows = await d1(env).all<{ id: string; revokedAt: number }>(
    sql`WITH RECURSIVE chain(id, revoked_at, depth) AS (
          SELECT id, revoked_at, 1 FROM agents WHERE replaced_by = ${id}
          UNION ALL
          SELECT a.id, a.revoked_at, c.depth + 1 FROM agents a JOIN chain c ON a.replaced_by = c.id WHERE c.depth < 100)
        SELECT id, revoked_at AS revokedAt FROM chain ORDER BY depth`,
  );
  return rows.map((r) => ({ id: r.id, revokedAt: new Date(r.revokedAt).toISOString() }));
}

export async function listAgents(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "viewer");
  const rows = await d1(env).select(AGENT_VIEW_COLUMNS).from(agents).where(isNull(agents.revokedAt)).orderBy(asc(agents.name)).all();
  return json({ agents: rows.map(toAgentView) });
}

// docs/protocol.md §Resync: the view plus what the agent's DO holds, so a test can
// compare ledger and journal.
export async function getAgent(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "viewer");
  const row = await requireLiveAgent(env, agentKey(request.params.id));
  const [replaced, config, upgrade, channel] = await Promise.all([
    replacedAgents(env, row.id),
    readConfig(env.DB, row.id),
    readUpgrade(env.DB, row.id),
    channelOf(env, row.id).status(row.id),
  ]);
  return json({ ...toAgentView(row), replaced, config: config ?? { desired: {}, applied: {} }, upgrade, channel } satisfies AgentDetail);
}

// Tags and properties are replaced whole by what is given; a deployment already created
// keeps the targets and agent properties it resolved then.
export async function patchAgent(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "admin");
  const row = await requireLiveAgent(env, agentKey(request.params.id));
  const body = await readJson(request, patchAgentBody);
  const set: { tags?: string; properties?: string } = {};
  if (body.tags !== undefined) set.tags = JSON.stringify(body.tags);
  if (body.properties !== undefined) set.properties = JSON.stringify(body.properties);
  let updated: AgentRow | undefined = row;
  if (Object.keys(set).length > 0) {
    updated = await d1(env).update(agents).set(set).where(and(eq(agents.id, row.id), isNull(agents.revokedAt))).returning(AGENT_VIEW_COLUMNS).get();
    if (!updated) throw new HttpError(404, `agent ${row.id} not found`);
  }
  // Settings the agent applies itself reach it as a command (docs/agent-lifecycle.md §Config).
  const change = { ...(body.concurrency !== undefined ? { concurrency: body.concurrency } : {}), ...(body.logLevel !== undefined ? { logLevel: body.logLevel } : {}) };
  if (Object.keys(change).length > 0) await changeConfig(env, row.id, change);
  const config = (await readConfig(env.DB, row.id)) ?? { desired: {}, applied: {} };
  return json({ ...toAgentView(updated), config });
}

// docs/protocol.md §Revoke. Repeatable: a second call answers with the first revokedAt
// (and ends any work dispatched in between). D1 is the truth: one batch refuses the
// credential and cancels the agent's open steps, so whatever happens to the call to
// the agent's channel, nothing the agent sends afterwards changes anything (every
// later write checks revoked_at).
export async function revokeAgent(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "admin");
  const key = agentKey(request.params.id);
  // A live agent by id or name; else a revoked one by its id only (the repeat), since a
  // revoked agent's name may have been taken over by another agent meanwhile.
  const id = (await findLiveAgent(env, key))?.id ?? key;
  const now = Date.now();
  const db = d1(env);
  await env.DB.batch([
    prepared(env.DB, sql`UPDATE agents SET revoked_at = ${now} WHERE id = ${id} AND revoked_at IS NULL`),
    ...revokedStatements(env.DB, id, now),
  ]);
  const row = await db.select({ id: agents.id, name: agents.name, revokedAt: agents.revokedAt }).from(agents).where(eq(agents.id, id)).get();
  if (!row || row.revokedAt === null) throw new HttpError(404, `agent ${key} not found`);
  const view = { id: row.id, name: row.name, revokedAt: new Date(row.revokedAt).toISOString() };
  try {
    await endChannelWork(env, id);
  } catch (e) {
    console.error(`revoking agent ${id}: its channel could not end the open work:`, e);
    throw new HttpError(503, "the agent is revoked but ending its open work failed; repeat the request", view);
  }
  return json(view);
}

// The second half of a revoke, after D1's batch (revokedStatements) has refused the
// credential and ended the steps: the agent's DO closes its sockets, releases its
// long-polls and ends the commands in its ledger. Also used by `register --replace`.
export async function endChannelWork(env: Env, agentId: string): Promise<void> {
  await channelOf(env, agentId).revoke(agentId);
}
