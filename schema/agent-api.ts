// Agent API (/agent/v1) and WebSocket messages: the one definition both the
// Worker and the agent import. docs/agent-api.md describes the protocol.
import { z } from "zod";
import { agentConfig, agentName, properties, tagList, UPGRADE_STATES } from "./api.ts";
import { inputValue, pluginId, pluginInput, semver } from "./plugin.ts";
import { LIMITS } from "./limits.ts";
import { finalStepStatus, retryPolicy, STEP_REASON_MAX } from "./steps.ts";

const id = z.string().min(1).max(200);
const epochMs = z.int().min(0);

export const registerRequest = z.strictObject({
  token: z.string().min(1).max(200),
  name: agentName,
  version: z.string().min(1).max(100),
  hostname: z.string().max(255).optional(),
  tags: tagList.optional(), // `outpost-agent register --tags web,eu`
  // `register --replace`: take over the name of a revoked or offline agent (a rebuilt
  // machine); that agent is revoked and its history kept under its own id.
  replace: z.boolean().optional(),
});
export type RegisterRequest = z.infer<typeof registerRequest>;
export const registerResponse = z.object({
  agentId: z.string(),
  credential: z.string(),
  // The server's trusted release keys (OUTPOST_RELEASE_PUBLIC_KEYS, SPKI PEM), which the
  // agent pins in its home: it will run only packages signed by one of them, whoever
  // serves them (docs/agent-lifecycle.md, "Key pinning"). "" when the server has none;
  // absent from servers older than pinning, read as "".
  releaseKeys: z.string().default(""),
});
// As sent: `releaseKeys` may be absent (servers older than pinning).
export type RegisterResponse = z.input<typeof registerResponse>;

// ---- commands: server → agent, pulled over HTTPS ----

// Fields of every step. `secrets`: the names of the secrets the step's expressions
// use; the agent fetches their values for this step only, when it starts it
// (POST /agent/v1/steps/:stepId/secrets), and never stores them.
const stepFields = {
  stepId: id,
  position: z.int().min(0),
  name: z.string(),
  timeoutSeconds: z.int().min(1).nullable(),
  retry: retryPolicy,
  secrets: z.array(z.string().max(64)).max(100).optional(),
};
export const shellStepToRun = z.object({ ...stepFields, type: z.literal("shell"), command: z.string() });
// A plug-in step carries what the agent needs from the manifest, pinned at creation:
// the package to fetch (its sha256 is checked), the argv, the declared inputs and outputs.
export const pluginStepToRun = z.object({
  ...stepFields,
  type: z.literal("plugin"),
  plugin: z.object({ id: pluginId, version: semver, sha256: z.string().regex(/^[0-9a-f]{64}$/) }),
  step: z.string(),
  run: z.array(z.string()).min(1),
  inputs: z.record(z.string(), inputValue), // as written: expressions not yet resolved
  inputDefs: z.array(pluginInput),
  outputs: z.array(z.string()),
});
export const stepToRun = z.discriminatedUnion("type", [shellStepToRun, pluginStepToRun]);
export type StepToRun = z.infer<typeof stepToRun>;
export type PluginStepToRun = z.infer<typeof pluginStepToRun>;

// What `${{ deployment.… }}` and `${{ agent.… }}` resolve to, fixed at creation.
export const commandContext = z.object({
  deploymentProperties: properties,
  agentName: z.string(),
  agentProperties: properties,
});
export type CommandContext = z.infer<typeof commandContext>;

export const deployCommand = z.object({
  type: z.literal("deploy"),
  id, // unique; the agent executes a command id at most once
  deploymentId: id,
  // How long the server waits for this agent while it is offline before failing its
  // unfinished steps as `agent-lost` (the agent itself never gives up on them).
  agentLostAfterSeconds: z.int().min(1),
  context: commandContext.optional(), // absent in commands stored before expressions existed
  steps: z.array(stepToRun).min(1),
});
export type DeployCommand = z.infer<typeof deployCommand>;
// docs/protocol.md §Cancel: the agent ends the deployment's steps it has not finished —
// pending ones are not started, running ones have their process group stopped — and
// reports them `canceled`. A cancel that arrives before its deploy command (or for one
// it never gets) is remembered: that deploy then ends at once, canceled.
export const cancelCommand = z.object({
  type: z.literal("cancel"),
  id,
  deploymentId: id,
});
// docs/agent-lifecycle.md §Config: the whole desired config (not a change), so applying
// the newest one is all an agent ever needs; §Restart: the monitor starts a new worker
// (running steps keep running and are re-attached). Both are settled once stored.
export const configCommand = z.object({ type: z.literal("config"), id, config: agentConfig });
export const restartCommand = z.object({ type: z.literal("restart"), id });
// docs/agent-lifecycle.md §Upgrade: the version to switch to and the sha256 of its package.
export const upgradeCommand = z.object({ type: z.literal("upgrade"), id, version: semver, sha256: z.string().regex(/^[0-9a-f]{64}$/) });
export const commandBody = z.discriminatedUnion("type", [deployCommand, cancelCommand, configCommand, restartCommand, upgradeCommand]);

export const cancelCommandIdFor = (deploymentId: string, agentId: string): string => `${deploymentId}:${agentId}:cancel`;

// One command per (deployment, agent): its id is derived, so a repeated dispatch finds
// the command already stored, and a report names its command without a lookup table.
export function commandIdFor(deploymentId: string, agentId: string): string {
  return `${deploymentId}:${agentId}`;
}
export type CommandBody = z.infer<typeof commandBody>;
export const command = z.intersection(z.object({ seq: z.int().min(1) }), commandBody);
export type Command = z.infer<typeof command>;

export const pullQuery = z.object({
  after: z.coerce.number().int().min(0),
  wait: z.coerce.number().int().min(0).max(LIMITS.longPollSeconds).default(0),
});
// 409: `after` is beyond the server's last command (the server's state was reset or
// restored); `head` is where the server is.
export const pullConflictResponse = z.object({ error: z.string(), head: z.int().min(0) });
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

// A report's id is not free text: it is derived from the step and the kind of
// report, so it names exactly one fact and a crafted id cannot shadow anything else
// (docs/protocol.md §Reports). Anything else is refused (400).
export const reportIds = {
  started: (stepId: string) => `${stepId}:started`,
  finished: (stepId: string) => `${stepId}:finished`,
};
const REPORT_ID_RULE = { "step-started": reportIds.started, "step-finished": reportIds.finished } as const;

// `at` is the agent's own clock when the work happened; the server places it on its
// own clock with the batch's `sentAt` (docs/protocol.md §Reports, "Times").
const stepStartedFields = z.strictObject({
  type: z.literal("step-started"),
  id,
  deploymentId: id,
  stepId: id,
  at: epochMs,
});
const stepFinishedFields = z.strictObject({
  type: z.literal("step-finished"),
  id,
  deploymentId: id,
  stepId: id,
  status: finalStepStatus,
  exitCode: z.int().nullable(),
  reason: z.string().max(STEP_REASON_MAX).nullable(),
  at: epochMs,
  // What the step wrote to OUTPOST_OUTPUTS (a plug-in step: its declared outputs only),
  // secrets masked. Absent from agents older than outputs.
  outputs: z.record(z.string().max(LIMITS.outputKeyBytes), z.string().max(LIMITS.outputsBytesPerStep)).optional(),
});
// The report shape without the id rule: only for reading back what a ledger stored
// before the rule existed (its ids were accepted then and must still drain).
export const storedReport = z.discriminatedUnion("type", [stepStartedFields, stepFinishedFields]);
export const report = storedReport.superRefine((r, ctx) => {
  const expected = REPORT_ID_RULE[r.type](r.stepId);
  if (r.id !== expected) ctx.addIssue({ code: "custom", path: ["id"], message: `a ${r.type} report's id must be '${expected}'` });
});
export type Report = z.infer<typeof report>;
export type StepFinishedReport = z.infer<typeof stepFinishedFields>;

// `sentAt`: the agent's clock when it sent the batch. The server takes
// (its own receive time − sentAt) as the agent's clock offset, so a constant skew
// cancels out, and clamps the result between the deployment's creation and the
// moment it heard of the report.
export const reportsRequest = z.strictObject({
  reports: z.array(report).min(1).max(LIMITS.reportsPerBatch),
  sentAt: epochMs,
});
export type ReportsRequest = z.infer<typeof reportsRequest>;
export const reportsResponse = z.object({ acked: z.array(z.string()) });
export type ReportsResponse = z.infer<typeof reportsResponse>;

// ---- log upload: PUT /agent/v1/steps/:stepId/log?offset=N, raw bytes ----
// Content-Type: application/octet-stream (the body is taken as bytes whatever it says).
// 409 {length}: a gap, resume at `length`. 410 {length}: the step has ended on the
// server (its final result was applied, or it was canceled); its log takes no more
// bytes — the agent stops uploading it. A chunk the server already holds whole is
// still answered 200, so a retry after a lost answer is harmless.
export const logUploadQuery = z.object({ offset: z.coerce.number().int().min(0) });
export const logUploadResponse = z.object({ length: z.int().min(0) });
export const LOG_CONTENT_TYPE = "application/octet-stream";

// ---- secrets for one step: POST /agent/v1/steps/:stepId/secrets, no body ----
// The values of the secrets the step's command names (stepToRun.secrets), for a step of
// this agent that has not ended. 404: not this agent's step; 410: the step has ended;
// 422 {missing}: a named secret no longer exists (the step fails naming it).
export const stepSecretsResponse = z.object({ secrets: z.record(z.string(), z.string()) });
export const stepSecretsMissing = z.object({ error: z.string(), missing: z.array(z.string()) });

// ---- plug-in packages: GET /agent/v1/plugins/:id/:version → the package bytes ----
// The agent checks them against the sha256 its command names before unpacking.

// ---- errors of the agent API ----
// Every error is {error: "<what is wrong>"}; a few carry a machine-readable `code`.
// Only `code: "agent-revoked"` (on a 401) means the credential is dead for good:
// the agent stops and does not retry. Any other 401 — an unknown credential, a
// proxy's own 401, a server whose state was reset — is retried with back-off.
export const AGENT_REVOKED = "agent-revoked";
// The message of that 401, and the reason of the 4003 close that says the same on the channel.
export const REVOKED_ERROR = "this agent has been revoked";
export const REVOKED_CLOSE_REASON = "agent revoked";
export const agentErrorBody = z.object({ error: z.string(), code: z.string().optional() });
export const isRevokedAnswer = (status: number, body: unknown): boolean =>
  status === 401 && agentErrorBody.safeParse(body).data?.code === AGENT_REVOKED;

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
  config: agentConfig.optional(), // the config the worker applies now (absent from older agents)
});
// After the hello: the worker applied a config command (docs/agent-lifecycle.md §Config),
// or an upgrade moved on (§Upgrade).
export const upgradeReport = z.strictObject({ version: z.string().max(100), state: z.enum(UPGRADE_STATES), reason: z.string().max(STEP_REASON_MAX).nullable() });
export type UpgradeReport = z.infer<typeof upgradeReport>;
export const statusMessage = z.strictObject({ type: z.literal("status"), config: agentConfig.optional(), upgrade: upgradeReport.optional() });
export const agentMessage = z.discriminatedUnion("type", [helloMessage, statusMessage]);
export type AgentMessage = z.infer<typeof agentMessage>;

export const welcomeMessage = z.object({
  type: z.literal("welcome"),
  agentId: z.string(),
  head: z.int().min(0), // newest command seq: pull after lastSeq when head > lastSeq
  acked: z.int().min(0), // highest seq the server has seen acknowledged
  applied: z.array(id), // of hello.reports, those already applied: delete them, don't re-send
  expecting: z.array(id), // steps of commands up to lastSeq whose final result the server lacks
  // How often the server wants a ping (docs/protocol.md §Presence); older servers omit it.
  heartbeatMs: z.int().min(1000).max(60_000).optional(),
});
export type WelcomeMessage = z.infer<typeof welcomeMessage>;
export const commandsMessage = z.object({ type: z.literal("commands"), head: z.int().min(0) });
export const serverMessage = z.discriminatedUnion("type", [welcomeMessage, commandsMessage]);
export type ServerMessage = z.infer<typeof serverMessage>;
