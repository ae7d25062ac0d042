// What an admin changes in a running agent (docs/agent-lifecycle.md §Config, §Restart):
// both travel as ledger commands in the agent's channel, so an offline agent gets
// them when it returns, and the agent acts on each once.
import { pickConfig } from "../../schema/agent-config.ts";
import type { AgentConfig } from "../../schema/api.ts";
import { json } from "../../schema/http.ts";
import { mergeDesiredConfig, setUpgrade } from "../../d1/agent-config.ts";
import { findAgentVersion } from "../../d1/agent-versions.ts";
import { d1 } from "../../d1/db.ts";
import { upgradeAgentBody, upgradeAgentsBody } from "../../schema/api.ts";
import { sql } from "drizzle-orm";
import { insertUpgradeRollout, listUpgradeRollouts, type UpgradeRollout } from "../../d1/upgrade-rollouts.ts";
import { assignWaves } from "../../durable-objects/rollout-rules.ts";
import { startUpgradeWave } from "../../durable-objects/upgrade-rollouts.ts";
import { readJson } from "../body.ts";
import { channelOf } from "../../durable-objects/channels.ts";
import { agentKey, requireLiveAgent } from "../agent-lookup.ts";
import type { ApiRequest } from "../api-request.ts";
import { requireApiRole } from "../auth.ts";
import type { Env } from "../env.ts";
import { HttpError } from "../http-errors.ts";

// Saves the change into the desired config and hands the agent the whole of it.
export async function changeConfig(env: Env, agentId: string, change: AgentConfig): Promise<AgentConfig> {
  const desired = await mergeDesiredConfig(env.DB, agentId, change);
  if (!desired) throw new HttpError(404, `agent ${agentId} not found`);
  await storeCommand(env, agentId, { type: "config", id: `config:${agentId}:${crypto.randomUUID()}`, config: pickConfig(desired) }, "config change");
  return desired;
}

// POST /api/v1/agents/:id/restart → 202: the monitor starts a new worker; running steps
// keep running and are re-attached.
export async function restartAgent(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "admin");
  const row = await requireLiveAgent(env, agentKey(request.params.id));
  await storeCommand(env, row.id, { type: "restart", id: `restart:${row.id}:${crypto.randomUUID()}` }, "restart");
  return json({ id: row.id, name: row.name, restart: "requested" }, 202);
}

// POST /api/v1/agents/:id/upgrade {"version"} → 202 (docs/agent-lifecycle.md §Upgrade):
// the agent downloads, verifies and switches to that version by itself, and reports
// each state; an offline agent upgrades when it returns.
export async function upgradeAgent(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "admin");
  const row = await requireLiveAgent(env, agentKey(request.params.id));
  const { version } = await readJson(request, upgradeAgentBody);
  const target = await findAgentVersion(d1(env), version);
  if (!target) throw new HttpError(404, `no agent version ${version} has been uploaded (GET /api/v1/agent-versions lists them)`);
  const now = Date.now();
  await setUpgrade(env.DB, row.id, { version, state: "pending", reason: null }, now);
  await storeCommand(env, row.id, { type: "upgrade", id: `upgrade:${row.id}:${crypto.randomUUID()}`, version, sha256: target.sha256 }, "upgrade");
  return json({ id: row.id, name: row.name, upgrade: { version, state: "pending", reason: null, updatedAt: new Date(now).toISOString() } }, 202);
}

// POST /api/v1/agents/upgrade {"version", "agents"? | "tags"?, "batchSize"?} → 202:
// many agents in waves (docs/agent-lifecycle.md §Upgrading many agents).
export async function upgradeAgents(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "admin");
  const body = await readJson(request, upgradeAgentsBody);
  const target = await findAgentVersion(d1(env), body.version);
  if (!target) throw new HttpError(404, `no agent version ${body.version} has been uploaded (GET /api/v1/agent-versions lists them)`);
  const agents = await upgradeTargets(env, body);
  const { waves, waveOf } = assignWaves(agents.length, body.batchSize === undefined ? null : { batchSize: body.batchSize, stopOnFailure: true });
  const ids: string[][] = Array.from({ length: waves }, () => []);
  agents.forEach((a, i) => ids[waveOf(i) - 1].push(a.id));
  const rollout: UpgradeRollout = { id: crypto.randomUUID(), version: body.version, sha256: target.sha256, waves: ids, currentWave: 1, state: "running", reason: null, createdAt: Date.now() };
  await insertUpgradeRollout(env.DB, rollout);
  try {
    await startUpgradeWave(env, rollout, 1);
  } catch (e) {
    // The cron hands the wave's agents what this could not.
    console.error(`upgrade rollout ${rollout.id}: starting wave 1 failed (the cron retries):`, e);
  }
  const names = new Map(agents.map((a) => [a.id, a.name]));
  return json({ id: rollout.id, version: rollout.version, state: rollout.state, waves: ids.map((w) => w.map((id) => names.get(id)!)) }, 202);
}

// GET /api/v1/agents/upgrade: the recent rollouts, newest first.
export async function listUpgradeRolloutsRoute(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "viewer");
  const rollouts = await listUpgradeRollouts(env.DB);
  return json({
    rollouts: rollouts.map((r) => ({ id: r.id, version: r.version, state: r.state, reason: r.reason, currentWave: r.currentWave, waves: r.waves, createdAt: new Date(r.createdAt).toISOString() })),
  });
}

async function upgradeTargets(env: Env, body: { agents?: string[]; tags?: string[] }): Promise<{ id: string; name: string }[]> {
  const rows = await d1(env).all<{ id: string; name: string; tags: string }>(sql`SELECT id, name, tags FROM agents WHERE revoked_at IS NULL ORDER BY name`);
  if (body.agents) {
    const byName = new Map(rows.map((r) => [r.name, r]));
    const unknown = body.agents.filter((n) => !byName.has(n));
    if (unknown.length) throw new HttpError(422, `unknown agent${unknown.length > 1 ? "s" : ""}: ${unknown.join(", ")}`, { unknownAgents: unknown });
    return body.agents.map((n) => byName.get(n)!);
  }
  const chosen = body.tags ? rows.filter((r) => body.tags!.every((t) => (JSON.parse(r.tags) as string[]).includes(t))) : rows;
  if (chosen.length === 0) throw new HttpError(422, body.tags ? `no agent carries the tag(s) ${body.tags.join(", ")}` : "there is no agent to upgrade");
  return chosen;
}

async function storeCommand(env: Env, agentId: string, command: Parameters<ReturnType<typeof channelOf>["enqueue"]>[1], what: string): Promise<void> {
  try {
    await channelOf(env, agentId).enqueue(agentId, command);
  } catch (e) {
    console.error(`agent ${agentId}: the ${what} could not be stored in its channel:`, e);
    throw new HttpError(503, `the ${what} could not be handed to the agent's channel; repeat the request`);
  }
}
