// The AgentChannel Durable Object's SQLite ledger: one per agent.
import { sqliteTable, text, integer, index, uniqueIndex } from "drizzle-orm/sqlite-core";
import { DEFAULT_AGENT_LOST_AFTER_SECONDS } from "./steps.ts";

// Commands for the agent. seq is dense and increasing (1, 2, 3, …); the agent's
// `after=` on a pull is a cumulative acknowledgement of everything up to it.
export const commands = sqliteTable(
  "commands",
  {
    seq: integer("seq").primaryKey(),
    id: text("id").notNull().unique(),
    body: text("body").notNull(), // JSON of the wire Command without seq
    createdAt: integer("created_at").notNull(),
    deploymentId: text("deployment_id").notNull().default(""),
    agentLostAfterSeconds: integer("agent_lost_after_seconds").notNull().default(DEFAULT_AGENT_LOST_AFTER_SECONDS),
    // Set when every step has a final report applied, or the command was ended by a revoke.
    finishedAt: integer("finished_at"),
    // Set when the agent-lost deadline passed and the steps were failed in D1 (done once).
    lostAt: integer("lost_at"),
    // The deployment has later rollout waves: once this command is settled, its
    // coordinator is poked so the next wave can start (docs/protocol.md §Rollout).
    coordinated: integer("coordinated", { mode: "boolean" }).notNull().default(false),
  },
  (t) => [index("commands_open").on(t.finishedAt, t.seq)],
);

// One row per step of every command: which final results the server still expects
// (welcome.expecting) is an indexed query, not a scan of every command body.
export const commandSteps = sqliteTable(
  "command_steps",
  {
    stepId: text("step_id").primaryKey(),
    commandSeq: integer("command_seq").notNull(),
    finishedAt: integer("finished_at"), // the step's finished report was applied (or revoke ended it)
  },
  (t) => [index("command_steps_open").on(t.finishedAt, t.commandSeq)],
);

// Timed work driven by the one DO alarm (docs/protocol.md §Agent lost): one row per
// command while the agent is offline, due at max(offlineSince, createdAt) + agentLostAfterSeconds.
export const dueWork = sqliteTable(
  "due_work",
  {
    key: text("key").primaryKey(), // "agent-lost:<seq>"
    kind: text("kind", { enum: ["agent-lost"] }).notNull(),
    commandSeq: integer("command_seq").notNull(),
    dueAt: integer("due_at").notNull(),
  },
  (t) => [index("due_work_due_at").on(t.dueAt)],
);

// Report ids applied while their step is still open: a re-sent report is acknowledged
// again, not re-applied. Once a step's final report is applied (or the server ended it)
// the step's row in command_steps answers for it, and its ids here are pruned
// (docs/protocol.md §Reports), so this table holds at most two rows per open step.
export const appliedReports = sqliteTable("applied_reports", {
  id: text("id").primaryKey(),
  appliedAt: integer("applied_at").notNull(),
});

// Applied reports not yet written to D1 (the DO cannot commit to both at once), and the
// server's own decisions about this agent's steps (agent-lost, revoked), kept in the same
// ordered queue so a late report is always projected after the decision it follows.
// `kind` + `key` name a job: a report's key is its id; a server job's key is its own
// ("<seq>"), in its own namespace, so no report id can ever shadow a server decision.
export const projectionOutbox = sqliteTable(
  "projection_outbox",
  {
    order: integer("ord").primaryKey({ autoIncrement: true }),
    kind: text("kind", { enum: ["report", "agent-lost", "revoked"] }).notNull(),
    key: text("key").notNull(),
    body: text("body").notNull(), // JSON of the ProjectionJob's payload
    attempts: integer("attempts").notNull().default(0),
    lastError: text("last_error"),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [uniqueIndex("projection_outbox_job").on(t.kind, t.key)],
);

// Small key/value facts about this channel (agent id, acked seq, presence, what was last
// written to D1, when the alarm was expected).
export const channelMeta = sqliteTable("channel_meta", {
  key: text("key").primaryKey(),
  value: text("value").notNull(),
});
