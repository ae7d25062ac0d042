// /agent/v1: authenticated in the Worker, then forwarded to the agent's own
// AgentChannel with an agent-id header the Worker sets itself.
import { logUploadQuery, pullQuery, reportsRequest } from "../../schema/agent-api.ts";
import { LIMITS } from "../../schema/limits.ts";
import { AGENT_ID_HEADER } from "../../durable-objects/agent-channel.ts";
import { requireAgent, type AgentIdentity } from "../auth.ts";
import { parseWith, readBytes, readJson, singleQuery } from "../body.ts";
import type { Env } from "../env.ts";
import { HttpError, json } from "../http-errors.ts";
import { appendLog } from "../logs.ts";
import type { ApiRequest } from "../router.ts";

// The DO only sees requests built here; its URL space is internal.
function channelRequest(agent: AgentIdentity, path: string, init: RequestInit & { from?: Request } = {}): Request {
  const headers = new Headers(init.from?.headers);
  headers.delete(AGENT_ID_HEADER);
  headers.delete("authorization");
  headers.set(AGENT_ID_HEADER, agent.id);
  if (init.body !== undefined) headers.set("content-type", "application/json");
  return new Request(`https://agent-channel${path}`, { method: init.method ?? "GET", headers, body: init.body });
}

function channel(env: Env, agent: AgentIdentity) {
  return env.AGENT_CHANNEL.get(env.AGENT_CHANNEL.idFromName(agent.id));
}

export async function openChannel(request: ApiRequest, env: Env): Promise<Response> {
  const agent = await requireAgent(request, env);
  if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
    throw new HttpError(426, "this endpoint needs a WebSocket upgrade (Upgrade: websocket)");
  }
  return channel(env, agent).fetch(channelRequest(agent, "/channel", { from: request }));
}

export async function pullCommands(request: ApiRequest, env: Env): Promise<Response> {
  const agent = await requireAgent(request, env);
  const q = parseWith(pullQuery, singleQuery(request.query), "query");
  return channel(env, agent).fetch(channelRequest(agent, `/commands?after=${q.after}&wait=${q.wait}`));
}

export async function postReports(request: ApiRequest, env: Env): Promise<Response> {
  const agent = await requireAgent(request, env);
  const { reports, sentAt } = await readJson(request, reportsRequest);
  const outcome = await channel(env, agent).receiveReports(agent.id, reports, sentAt);
  if ("rejected" in outcome) throw new HttpError(outcome.status, outcome.rejected, outcome.code ? { code: outcome.code } : {});
  return json({ acked: outcome.acked });
}

export async function putStepLog(request: ApiRequest, env: Env): Promise<Response> {
  const agent = await requireAgent(request, env);
  const { offset } = parseWith(logUploadQuery, singleQuery(request.query), "query");
  const stepId = request.params.stepId;
  if (!stepId || stepId.length > 200) throw new HttpError(400, "invalid step id");
  const chunk = await readBytes(request, LIMITS.logChunkBytes, "log chunk");
  const length = await appendLog(env, agent.id, stepId, offset, chunk);
  return json({ length });
}
