// The one way to reach a Durable Object: an agent's channel is named by the agent id,
// a deployment's coordinator by the deployment id.
export function channelOf(env: Cloudflare.Env, agentId: string) {
  return env.AGENT_CHANNEL.get(env.AGENT_CHANNEL.idFromName(agentId));
}

export function coordinatorOf(env: Cloudflare.Env, deploymentId: string) {
  return env.DEPLOYMENT_COORDINATOR.get(env.DEPLOYMENT_COORDINATOR.idFromName(deploymentId));
}
