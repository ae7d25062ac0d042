// Agent API (/agent/v1) and WebSocket messages: the one definition both the
// Worker and the agent import. docs/agent-api.md describes the protocol.
import { z } from "zod";
import { agentName } from "./api.ts";
import { LIMITS } from "./limits.ts";

const id = z.string().min(1).max(200);
const epochMs = z.int().min(0);

export const registerRequest = z.strictObject({
  token: z.string().min(1).max(200),
  name: agentName,
  version: z.string().min(1).max(100),
  hostname: z.string().max(255).optional(),
});
export type RegisterRequest = z.infer<typeof registerRequest>;
export const registerResponse = z.object({ agentId: z.string(), credential: z.string() });
export type RegisterResponse = z.infer<typeof registerResponse>;

// ---- commands: server → agent, pulled over HTTPS ----

export const stepToRun = z.object({
  stepId: id,
  position: z.int().min(0),
  name: z.string(),
  type: z.literal("shell"),
  command: z.string(),
  timeoutSeconds: z.int().min(1).nullable(),
  retry: z.enum(["never", "safe"]),
});
export type StepToRun = z.infer<typeof stepToRun>;

export const deployCommand = z.object({
  type: z.literal("deploy"),
  id, // unique; the agent executes a command id at most once
  deploymentId: id,
  // How long the server waits for this agent while it is offline before failing its
  // unfinished steps as `agent-lost` (the agent itself never gives up on them).
  agentLostAfterSeconds: z.int().min(1),
  steps: z.array(stepToRun).min(1),
});
export const commandBody = z.discriminatedUnion("type", [deployCommand]);
export type CommandBody = z.infer<typeof commandBody>;
export const command = z.intersection(z.object({ seq: z.int().min(1) }), commandBody);
export type Command = z.infer<typeof command>;

export const pullQuery = z.object({
  after: z.coerce.number().int().min(0),
  wait: z.coerce.number().int().min(0).max(LIMITS.longPollSeconds).default(0),
});
export const pullResponse = z.object({
  commands: z.array(command),
  head: z.int().min(0),
  // The DO's cumulative acknowledgement BEFORE this pull's `after` was applied:
  // every seq ≤ acked was stored by this agent at some point. A command at or
  // below it that the agent's journal lacks was stored and then lost (journal
  // lost or restored from an older copy), so it may have run already: the agent
  // reports its steps interrupted and never runs it (docs/protocol.md §Commands).
  acked: z.int().min(0),
});
export type PullResponse = z.infer<typeof pullResponse>;

// ---- reports: agent → server, posted in batches ----
// Report ids are derived from what they describe (`<stepId>:started`), so a
// report regenerated after a crash has the same id and is applied once.

export const stepStartedReport = z.strictObject({
  type: z.literal("step-started"),
  id,
  deploymentId: id,
  stepId: id,
  at: epochMs,
});
export const stepFinishedReport = z.strictObject({
  type: z.literal("step-finished"),
  id,
  deploymentId: id,
  stepId: id,
  status: z.enum(["succeeded", "failed", "interrupted", "skipped", "canceled"]),
  exitCode: z.int().nullable(),
  reason: z.string().max(500).nullable(),
  at: epochMs,
});
export const report = z.discriminatedUnion("type", [stepStartedReport, stepFinishedReport]);
export type Report = z.infer<typeof report>;
export type StepFinishedReport = z.infer<typeof stepFinishedReport>;

export const reportsRequest = z.strictObject({ reports: z.array(report).min(1).max(LIMITS.reportsPerBatch) });
export const reportsResponse = z.object({ acked: z.array(z.string()) });
export type ReportsResponse = z.infer<typeof reportsResponse>;

export const reportIds = {
  started: (stepId: string) => `${stepId}:started`,
  finished: (stepId: string) => `${stepId}:finished`,
};

// ---- log upload: PUT /agent/v1/steps/:stepId/log?offset=N, raw bytes ----
export const logUploadQuery = z.object({ offset: z.coerce.number().int().min(0) });
export const logUploadResponse = z.object({ length: z.int().min(0) });

// ---- WebSocket /agent/v1/channel: notifications and status only, never work ----
// Heartbeats are the bare text frames "ping"/"pong" (answered by the DO's auto-response).

// Close codes the server uses (docs/agent-api.md).
export const CLOSE = {
  policy: 1008,
  tooBig: 1009,
  internal: 1011,
  noHeartbeat: 4000, // docs/protocol.md §Presence
  replaced: 4001, // a newer connection of the same agent
  revoked: 4003, // docs/protocol.md §Revoke: the credential is dead; the agent must not reconnect
} as const;

// Resync on connect (docs/protocol.md §Resync): the agent states what it holds,
// the server answers with what it has and still expects; each side then sends
// only the gap.
export const helloMessage = z.strictObject({
  type: z.literal("hello"),
  version: z.string().max(100),
  lastSeq: z.int().min(0), // highest command seq stored in the journal
  running: z.array(id).max(1000), // step ids running now
  reports: z.array(id).max(1000), // ids of the reports in the outbox (oldest first, at most 1000)
  pendingReports: z.int().min(0), // how many reports the outbox holds in all
});
export const agentMessage = z.discriminatedUnion("type", [helloMessage]);
export type AgentMessage = z.infer<typeof agentMessage>;

export const welcomeMessage = z.object({
  type: z.literal("welcome"),
  agentId: z.string(),
  head: z.int().min(0), // newest command seq: pull after lastSeq when head > lastSeq
  acked: z.int().min(0), // highest seq the server has seen acknowledged
  applied: z.array(id), // of hello.reports, those already applied: delete them, don't re-send
  expecting: z.array(id), // steps of commands up to lastSeq whose final result the server lacks
});
export type WelcomeMessage = z.infer<typeof welcomeMessage>;
export const commandsMessage = z.object({ type: z.literal("commands"), head: z.int().min(0) });
export const serverMessage = z.discriminatedUnion("type", [welcomeMessage, commandsMessage]);
export type ServerMessage = z.infer<typeof serverMessage>;
