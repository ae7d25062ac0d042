// What an admin changes in a running agent (docs/agent-lifecycle.md §Config, §Restart):
// both travel as ledger commands in the agent's channel, so an offline agent gets
// them when it returns, and the agent acts on each once.
import { pickConfig } from "../../schema/agent-config.ts";
import type { AgentConfig } from "../../schema/api.ts";
import { json } from "../../schema/http.ts";
import { mergeDesiredConfig, setUpgrade } from "../../d1/agent-config.ts";
import { findAgentVersion } from "../../d1/agent-versions.ts";
import { d1 } from "../../d1/db.ts";
import { upgradeAgentBody } from "../../schema/api.ts";
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

async function storeCommand(env: Env, agentId: string, command: Parameters<ReturnType<typeof channelOf>["enqueue"]>[1], what: string): Promise<void> {
  try {
    await channelOf(env, agentId).enqueue(agentId, command);
  } catch (e) {
    console.error(`agent ${agentId}: the ${what} could not be stored in its channel:`, e);
    throw new HttpError(503, `the ${what} could not be handed to the agent's channel; repeat the request`);
  }
}
