// The agent's reading of what the server sends. The shared schemas
// (schema/agent-api.ts) are the contract; here two newer fields are read
// leniently so that the agent keeps working against a server that does not
// send them yet (a rolling upgrade): `agentLostAfterSeconds` of a deploy
// command (server-side policy the agent ignores: it never gives up on a step)
// and welcome's resync fields `acked`, `applied`, `expecting` (docs/protocol.md
// §Resync). Without them the agent simply re-sends its whole outbox, which the
// server dedupes by report id.
import { z } from "zod";
import { commandsMessage, deployCommand, welcomeMessage } from "../../schema/agent-api.ts";

export const agentDeployCommand = deployCommand.extend({ agentLostAfterSeconds: deployCommand.shape.agentLostAfterSeconds.optional() });
export const agentCommand = z.intersection(z.object({ seq: z.int().min(1) }), z.discriminatedUnion("type", [agentDeployCommand]));
export type AgentCommand = z.infer<typeof agentCommand>;

export const agentWelcome = welcomeMessage.extend({
  acked: welcomeMessage.shape.acked.nullable().default(null), // null: the server did not say
  applied: welcomeMessage.shape.applied.default([]),
  expecting: welcomeMessage.shape.expecting.nullable().default(null), // null: the server did not say
});
export type AgentWelcome = z.infer<typeof agentWelcome>;

export const agentServerMessage = z.discriminatedUnion("type", [agentWelcome, commandsMessage]);
export type AgentServerMessage = z.infer<typeof agentServerMessage>;
