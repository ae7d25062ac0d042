// The one way to reach an agent's channel: its Durable Object is named by the agent id.
import type { Env } from "./env.ts";

export function channelOf(env: Env, agentId: string) {
  return env.AGENT_CHANNEL.get(env.AGENT_CHANNEL.idFromName(agentId));
}
