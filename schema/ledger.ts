// The AgentChannel Durable Object's SQLite ledger: one per agent.
import { sqliteTable, text, integer } from "drizzle-orm/sqlite-core";

// Commands for the agent. seq is dense and increasing (1, 2, 3, …); the agent's
// `after=` on a pull is a cumulative acknowledgement of everything up to it.
export const commands = sqliteTable("commands", {
  seq: integer("seq").primaryKey(),
  id: text("id").notNull().unique(),
  body: text("body").notNull(), // JSON of the wire Command without seq
  createdAt: integer("created_at").notNull(),
});

// Every report id ever applied: a re-sent report is acknowledged again, not re-applied.
export const appliedReports = sqliteTable("applied_reports", {
  id: text("id").primaryKey(),
  appliedAt: integer("applied_at").notNull(),
});

// Applied reports not yet written to D1 (the DO cannot commit to both at once).
export const projectionOutbox = sqliteTable("projection_outbox", {
  reportId: text("report_id").primaryKey(),
  body: text("body").notNull(), // JSON of the wire Report
  attempts: integer("attempts").notNull().default(0),
  lastError: text("last_error"),
  createdAt: integer("created_at").notNull(),
});

// Small key/value facts about this channel (agent id and name, acked seq, presence).
export const channelMeta = sqliteTable("channel_meta", {
  key: text("key").primaryKey(),
  value: text("value").notNull(),
});
