// /agent/v1: authenticated in the Worker, then forwarded to the agent's own
// AgentChannel with an agent-id header the Worker sets itself.
import { pullQuery, reportsRequest } from "../../schema/agent-api.ts";
import { AGENT_ID_HEADER, type Refusal } from "../../durable-objects/agent-channel.ts";
import { channelOf } from "../../durable-objects/channels.ts";
import { requireAgent, requireAgentForChannel, type AgentIdentity } from "../auth.ts";
import { parseWith, readJson, singleQuery } from "../body.ts";
import type { Env } from "../env.ts";
import { HttpError } from "../http-errors.ts";
import { json } from "../../schema/http.ts";
import type { ApiRequest } from "../api-request.ts";

// The DO only sees the upgrade request built here: its URL space is internal, and the
// agent id header is set by the Worker alone.
function upgradeRequest(agent: AgentIdentity, from: Request): Request {
  const headers = new Headers(from.headers);
  headers.delete(AGENT_ID_HEADER);
  headers.delete("authorization");
  headers.set(AGENT_ID_HEADER, agent.id);
  return new Request("https://agent-channel/channel", { method: "GET", headers });
}

// An RPC refusal as the HTTP error it stands for.
function refusal(r: Refusal): never {
  throw new HttpError(r.status, r.error, r.extra);
}

export async function openChannel(request: ApiRequest, env: Env): Promise<Response> {
  const agent = await requireAgentForChannel(request, env);
  if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
    throw new HttpError(426, "this endpoint needs a WebSocket upgrade (Upgrade: websocket)");
  }
  return channelOf(env, agent.id).fetch(upgradeRequest(agent, request));
}

export async function pullCommands(request: ApiRequest, env: Env): Promise<Response> {
  const agent = await requireAgentForChannel(request, env);
  const q = parseWith(pullQuery, singleQuery(request.query), "query");
  const outcome = await channelOf(env, agent.id).pull(agent.id, q.after, q.wait);
  if (!outcome.ok) refusal(outcome.refused);
  return json(outcome.value);
}

export async function postReports(request: ApiRequest, env: Env): Promise<Response> {
  const agent = await requireAgentForChannel(request, env);
  const { reports, sentAt } = await readJson(request, reportsRequest);
  const outcome = await channelOf(env, agent.id).receiveReports(agent.id, reports, sentAt);
  if (!outcome.ok) refusal(outcome.refused);
  return json(outcome.value);
}
