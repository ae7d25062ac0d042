// The journal's outbox of reports (docs/protocol.md §Reports): written in the same
// transaction as the state change each report tells of, read oldest first, deleted once
// acknowledged. A report the server refused on its own (422) is set aside in
// rejected_reports for a human to look at (for the retention period), so the reports
// behind it can go. journal.ts runs these under its lock.
import { asc, eq, inArray, sql } from "drizzle-orm";
import type { LibSQLDatabase } from "drizzle-orm/libsql";
import type { Report } from "../../schema/agent-api.ts";
import { outbox, rejectedReports } from "../../schema/journal.ts";
import type { Tx } from "./journal-tx.ts";

export type OutboxEntry = { order: number; id: string; report: Report; createdAt: number };
export type RejectedReport = typeof rejectedReports.$inferSelect;
const REJECTED_ERROR_CHARS = 1000;

export async function countOutbox(db: LibSQLDatabase): Promise<number> {
  const row = await db.select({ n: sql<number>`count(*)` }).from(outbox).get();
  return Number(row?.n ?? 0);
}

export async function peekOutbox(db: LibSQLDatabase, limit: number): Promise<OutboxEntry[]> {
  const rows = await db.select().from(outbox).orderBy(asc(outbox.order)).limit(limit);
  return rows.map((r) => ({ order: r.order, id: r.id, report: JSON.parse(r.body) as Report, createdAt: r.createdAt }));
}

export async function outboxIds(db: LibSQLDatabase, limit: number): Promise<string[]> {
  const rows = await db.select({ id: outbox.id }).from(outbox).orderBy(asc(outbox.order)).limit(limit);
  return rows.map((r) => r.id);
}

export async function deleteReports(db: LibSQLDatabase, ids: string[]): Promise<void> {
  await db.delete(outbox).where(inArray(outbox.id, ids));
}

// False when the report is no longer in the outbox.
export async function setAsideRejected(tx: Tx, id: string, status: number, error: string | null, now: number): Promise<boolean> {
  const row = await tx.select().from(outbox).where(eq(outbox.id, id)).get();
  if (!row) return false;
  const values = { id, body: row.body, status, error: error?.slice(0, REJECTED_ERROR_CHARS) ?? null, rejectedAt: now };
  await tx.insert(rejectedReports).values(values).onConflictDoUpdate({ target: rejectedReports.id, set: values });
  await tx.delete(outbox).where(eq(outbox.id, id));
  return true;
}

export function selectRejected(db: LibSQLDatabase): Promise<RejectedReport[]> {
  return db.select().from(rejectedReports).orderBy(asc(rejectedReports.rejectedAt));
}
