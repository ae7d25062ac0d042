// The agent's journal (libSQL file in the agent home). Commands are stored here
// before they are acknowledged; reports wait in the outbox until acknowledged.
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
    enum: ["pending", "running", "succeeded", "failed", "interrupted", "skipped", "canceled"],
  }).notNull(),
  pid: integer("pid"),
  exitCode: integer("exit_code"),
  reason: text("reason"),
  startedAt: integer("started_at"),
  finishedAt: integer("finished_at"),
  logUploaded: integer("log_uploaded").notNull().default(0), // bytes of output the server has
  logSize: integer("log_size"), // final size, known once the step ended
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
