// What the journal's writers share (agent/worker/journal.ts and the modules it runs):
// the transaction type, and the one way a report enters the outbox — inside the
// transaction of the state change it describes (docs/protocol.md §Reports).
import type { LibSQLDatabase } from "drizzle-orm/libsql";
import type { Report } from "../../schema/agent-api.ts";
import { outbox } from "../../schema/journal.ts";

export type Tx = Parameters<Parameters<LibSQLDatabase["transaction"]>[0]>[0];

// A report already queued (same id: regenerated after a crash) is left as it is.
export async function insertReport(tx: Tx, r: Report, now: number): Promise<void> {
  await tx.insert(outbox).values({ id: r.id, body: JSON.stringify(r), createdAt: now }).onConflictDoNothing();
}
