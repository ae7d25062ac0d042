// D1 (the server's system of record): agents, tokens, deployments, steps, logs.
// Timestamps are epoch milliseconds. Status columns only ever move forward; the
// projection code relies on that to make every write idempotent.
import { sql } from "drizzle-orm";
import { sqliteTable, text, integer, blob, primaryKey, index, uniqueIndex } from "drizzle-orm/sqlite-core";
import { DEFAULT_AGENT_LOST_AFTER_SECONDS, DEPLOYMENT_STATUSES, RETRY_POLICIES, STEP_STATUSES, STEP_TYPES } from "./steps.ts";

export const agents = sqliteTable(
  "agents",
  {
    id: text("id").primaryKey(),
    name: text("name").notNull(),
    credentialHash: text("credential_hash").notNull().unique(),
    status: text("status", { enum: ["online", "offline"] }).notNull().default("offline"),
    version: text("version"),
    hostname: text("hostname"),
    lastSeenAt: integer("last_seen_at"),
    createdAt: integer("created_at").notNull(),
    revokedAt: integer("revoked_at"),
    tags: text("tags").notNull().default("[]"), // JSON array of tags (schema/api.ts tag)
    properties: text("properties").notNull().default("{}"), // JSON object, string values
    // `register --replace` (docs/api.md §Agents): the id of the agent that took this one's
    // name. The old row stays (revoked) so its deployments' steps keep their agent.
    replacedBy: text("replaced_by"),
    // docs/agent-lifecycle.md §Config: JSON of the agent config an admin asked for
    // (PATCH), and of what the agent last said it applies (its hello / status message).
    desiredConfig: text("desired_config"),
    appliedConfig: text("applied_config"),
    // docs/agent-lifecycle.md §Upgrade: JSON {version, state, reason, updatedAt} of the last upgrade asked for.
    upgrade: text("upgrade"),
  },
  // A name belongs to one live agent at a time; revoked agents keep theirs for history.
  (t) => [uniqueIndex("agents_live_name").on(t.name).where(sql`revoked_at IS NULL`)],
);

export const registrationTokens = sqliteTable("registration_tokens", {
  tokenHash: text("token_hash").primaryKey(),
  createdAt: integer("created_at").notNull(),
  expiresAt: integer("expires_at").notNull(),
  usedAt: integer("used_at"),
  usedByAgentId: text("used_by_agent_id"),
});

export const apiTokens = sqliteTable("api_tokens", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  tokenHash: text("token_hash").notNull().unique(),
  role: text("role", { enum: ["admin", "viewer"] }).notNull(),
  createdAt: integer("created_at").notNull(),
  revokedAt: integer("revoked_at"),
});

export const deployments = sqliteTable(
  "deployments",
  {
    id: text("id").primaryKey(),
    name: text("name").notNull(),
    status: text("status", { enum: DEPLOYMENT_STATUSES }).notNull(),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
    finishedAt: integer("finished_at"),
    // docs/protocol.md §Agent lost: how long an offline agent's unfinished steps are waited for.
    agentLostAfterSeconds: integer("agent_lost_after_seconds").notNull().default(DEFAULT_AGENT_LOST_AFTER_SECONDS),
    properties: text("properties").notNull().default("{}"), // JSON: ${{ deployment.properties.K }}
    targetTags: text("target_tags"), // JSON array when the targets were named by tags
    // docs/api.md §Rollout: JSON {batchSize, stopOnFailure} or null (one wave). Targets of
    // waves after current_wave are not dispatched yet; the deployment's coordinator moves
    // current_wave on once every step of the current wave has ended.
    rollout: text("rollout"),
    waves: integer("waves").notNull().default(1),
    currentWave: integer("current_wave").notNull().default(1),
    canceledAt: integer("canceled_at"), // POST …/cancel; the status becomes `canceled` once no step is active
  },
  (t) => [index("deployments_created_at").on(t.createdAt)],
);

// docs/protocol.md §Idempotent requests: a POST /api/v1/deployments repeated with the
// same Idempotency-Key returns the deployment the first request created. The row is
// written in the same D1 batch as the deployment, so it exists iff the deployment does.
// Keys expire after 24 h (IDEMPOTENCY_KEY_TTL_MS); the cron deletes them by age.
export const idempotencyKeys = sqliteTable(
  "idempotency_keys",
  {
    key: text("key").primaryKey(),
    requestHash: text("request_hash").notNull(), // SHA-256 of the canonical parsed body
    deploymentId: text("deployment_id").notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [index("idempotency_keys_created_at").on(t.createdAt)],
);

// One row per (deployment, agent): the command that carries that agent's steps.
// dispatchedAt stays null until the agent's Durable Object has stored the
// command, so an interrupted dispatch can be found and repeated.
export const deploymentTargets = sqliteTable(
  "deployment_targets",
  {
    deploymentId: text("deployment_id").notNull(),
    agentId: text("agent_id").notNull(),
    commandId: text("command_id").notNull().unique(),
    dispatchedAt: integer("dispatched_at"),
    wave: integer("wave").notNull().default(1),
    // The agent's properties when the deployment was created (${{ agent.properties.K }}).
    agentProperties: text("agent_properties").notNull().default("{}"),
    // Set once the cancel command is stored in the agent's channel (like dispatched_at).
    cancelSentAt: integer("cancel_sent_at"),
  },
  // The agent's DO looks up its own undispatched targets (docs/protocol.md §Dispatch).
  (t) => [primaryKey({ columns: [t.deploymentId, t.agentId] }), index("deployment_targets_undispatched").on(t.agentId, t.dispatchedAt)],
);

export const deploymentSteps = sqliteTable(
  "deployment_steps",
  {
    id: text("id").primaryKey(),
    deploymentId: text("deployment_id").notNull(),
    agentId: text("agent_id").notNull(),
    position: integer("position").notNull(),
    name: text("name").notNull(),
    type: text("type", { enum: STEP_TYPES }).notNull(),
    command: text("command").notNull(), // a shell step's command; "" for a plug-in step
    // JSON of what the agent needs beyond the columns: a plug-in step's pinned package,
    // argv, inputs and declared inputs/outputs; the secrets the step names (schema/agent-api.ts).
    definition: text("definition"),
    outputs: text("outputs"), // JSON object from the step-finished report
    pluginId: text("plugin_id"),
    pluginVersion: text("plugin_version"),
    timeoutSeconds: integer("timeout_seconds"),
    retry: text("retry", { enum: RETRY_POLICIES }).notNull(),
    status: text("status", { enum: STEP_STATUSES }).notNull(),
    exitCode: integer("exit_code"),
    reason: text("reason"),
    // When the work happened on the agent, placed on the server's clock
    // (docs/protocol.md §Reports, "Times"); reportedAt: when the server received the
    // final result (an outage can put the two far apart).
    startedAt: integer("started_at"),
    finishedAt: integer("finished_at"),
    reportedAt: integer("reported_at"),
    logLength: integer("log_length").notNull().default(0),
  },
  (t) => [
    index("deployment_steps_deployment").on(t.deploymentId, t.agentId, t.position),
    // Step counts by status for the deployment list, read from the index alone.
    index("deployment_steps_status").on(t.deploymentId, t.status),
    index("deployment_steps_agent_status").on(t.agentId, t.status),
  ],
);

// Legacy: a step's output as byte chunks in D1, keyed by their offset, as releases
// before log_chunks wrote it. No longer written; read (merged with step_log_chunks)
// so logs of those releases stay whole, and deleted with their steps' logs (d1/logs.ts).
export const stepLogs = sqliteTable(
  "step_logs",
  {
    stepId: text("step_id").notNull(),
    offset: integer("offset").notNull(),
    data: blob("data", { mode: "buffer" }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.stepId, t.offset] })],
);

// The index of a step's output (docs/protocol.md §Logs): its bytes are R2 objects in
// the LOGS bucket, one per row, holding bytes [offset, offset + length) of the output.
// Rows of a step tile [0, deployment_steps.log_length) without gap or overlap (together
// with any legacy step_logs rows before them): a row is only written in the D1 batch
// that advances log_length from `offset`, guarded by log_length still being `offset`.
export const stepLogChunks = sqliteTable(
  "step_log_chunks",
  {
    stepId: text("step_id").notNull(),
    offset: integer("offset").notNull(),
    length: integer("length").notNull(),
    r2Key: text("r2_key").notNull(), // steps/<stepId>/<offset, 16 digits>-<random>
  },
  (t) => [primaryKey({ columns: [t.stepId, t.offset] })],
);

// Plug-in versions (docs/plugins.md). The package bytes are in R2 (PLUGINS bucket, key
// pluginObjectKey); D1 holds what is listed and checked. A version is immutable.
export const plugins = sqliteTable(
  "plugins",
  {
    id: text("id").notNull(),
    version: text("version").notNull(),
    name: text("name").notNull(),
    description: text("description").notNull(),
    manifest: text("manifest").notNull(), // JSON of the validated outpost-plugin.json
    sha256: text("sha256").notNull(), // of the uploaded package bytes
    size: integer("size").notNull(),
    uploadedAt: integer("uploaded_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.id, t.version] })],
);

// Which plug-in versions a deployment uses: a version is not deleted while an
// unfinished deployment needs it.
export const deploymentPlugins = sqliteTable(
  "deployment_plugins",
  {
    deploymentId: text("deployment_id").notNull(),
    pluginId: text("plugin_id").notNull(),
    version: text("version").notNull(),
  },
  (t) => [primaryKey({ columns: [t.deploymentId, t.pluginId, t.version] }), index("deployment_plugins_version").on(t.pluginId, t.version)],
);

// Secrets, AES-GCM encrypted with OUTPOST_SECRETS_KEY (worker/secrets-crypto.ts):
// `sealed` is base64 of iv ‖ ciphertext; the name is bound in as additional data.
export const secrets = sqliteTable("secrets", {
  name: text("name").primaryKey(),
  sealed: text("sealed").notNull(),
  createdAt: integer("created_at").notNull(),
  updatedAt: integer("updated_at").notNull(),
});

// Agent packages (docs/agent-lifecycle.md): one row per uploaded version, its bytes in
// R2 (AGENT_PACKAGES, d1/agent-versions.ts agentPackageKey). Immutable like plug-in
// versions, except pinned_at: set on the one version an admin pinned as "current"
// (PUT /api/v1/agent-versions/current), null on all others; none pinned → the newest.
export const agentVersions = sqliteTable("agent_versions", {
  version: text("version").primaryKey(), // semver, from the signed manifest
  sha256: text("sha256").notNull(), // of the uploaded package bytes
  platforms: text("platforms").notNull(), // JSON array, e.g. ["linux-x64-gnu"]
  size: integer("size").notNull(),
  uploadedAt: integer("uploaded_at").notNull(),
  pinnedAt: integer("pinned_at"),
});

// docs/agent-lifecycle.md §Upgrading many agents: POST /api/v1/agents/upgrade. `waves`
// is JSON of the agent ids of each wave, in order; the wave `current_wave` (1-based) has
// its upgrade commands; the next starts once every agent of it reports `succeeded`, and
// a `failed` or `rolled-back` one stops the rollout.
export const upgradeRollouts = sqliteTable(
  "upgrade_rollouts",
  {
    id: text("id").primaryKey(),
    version: text("version").notNull(),
    sha256: text("sha256").notNull(),
    waves: text("waves").notNull(),
    currentWave: integer("current_wave").notNull(),
    state: text("state", { enum: ["running", "succeeded", "stopped"] }).notNull(),
    reason: text("reason"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [index("upgrade_rollouts_state").on(t.state)],
);
