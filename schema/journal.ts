// The agent's journal (libSQL file in the agent home). Commands are stored here
// before they are acknowledged; reports wait in the outbox until acknowledged.
import { STEP_STATUSES } from "./steps.ts";
import { sqliteTable, text, integer } from "drizzle-orm/sqlite-core";

export const journalCommands = sqliteTable("commands", {
  seq: integer("seq").primaryKey(),
  id: text("id").notNull().unique(),
  body: text("body").notNull(), // JSON of the wire Command
  state: text("state", { enum: ["pending", "running", "done"] }).notNull(),
  receivedAt: integer("received_at").notNull(),
});

export const journalSteps = sqliteTable("steps", {
  stepId: text("step_id").primaryKey(),
  deploymentId: text("deployment_id").notNull(),
  commandSeq: integer("command_seq").notNull(),
  position: integer("position").notNull(),
  state: text("state", {
    enum: STEP_STATUSES,
  }).notNull(),
  pid: integer("pid"),
  exitCode: integer("exit_code"),
  reason: text("reason"),
  startedAt: integer("started_at"),
  finishedAt: integer("finished_at"),
  logUploaded: integer("log_uploaded").notNull().default(0), // bytes of output the server has
  logSize: integer("log_size"), // final size, known once the step ended
  // Why the upload of this step's output stopped short (server said 410/413, file
  // unreadable): it counts as delivered, so its step-finished report is not held.
  logGivenUp: text("log_given_up"),
  // Bytes cut from output.log to keep it within the per-step cap while the step ran.
  outputDropped: integer("output_dropped").notNull().default(0),
  outputs: text("outputs"), // JSON of the outputs the step wrote (secrets masked), once it ended
});

// Deployments a cancel command ended on this agent (docs/protocol.md §Cancel). A deploy
// command for one of them — stored before or after the cancel — runs no more steps.
export const canceledDeployments = sqliteTable("canceled_deployments", {
  deploymentId: text("deployment_id").primaryKey(),
  commandSeq: integer("command_seq").notNull(), // the cancel command
  canceledAt: integer("canceled_at").notNull(),
});

export const outbox = sqliteTable("outbox", {
  order: integer("ord").primaryKey({ autoIncrement: true }),
  id: text("id").notNull().unique(),
  body: text("body").notNull(), // JSON of the wire Report
  createdAt: integer("created_at").notNull(),
});

export const journalMeta = sqliteTable("meta", {
  key: text("key").primaryKey(),
  value: text("value").notNull(),
});

// Reports the server refused on their own with 422 (docs/protocol.md §Reports): moved
// out of the outbox so they cannot block the reports behind them, kept for a human.
export const rejectedReports = sqliteTable("rejected_reports", {
  id: text("id").primaryKey(),
  body: text("body").notNull(), // JSON of the wire Report
  status: integer("status").notNull(), // HTTP status of the refusal
  error: text("error"), // the server's `error`
  rejectedAt: integer("rejected_at").notNull(),
});
