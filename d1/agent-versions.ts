// Agent versions in D1 (docs/agent-lifecycle.md): a row lists an uploaded agent package
// and names its bytes in R2. Versions are immutable (inserted once, never deleted here);
// only the "current" pin moves between them.
import { eq, sql } from "drizzle-orm";
import { agentVersions } from "../schema/d1.ts";
import { compareSemver } from "../schema/plugin.ts";
import type { Db } from "./db.ts";

export type AgentVersionRow = typeof agentVersions.$inferSelect;

// As pluginObjectKey (d1/plugins.ts): the upload time and sha256 make every upload's
// object its own, so an upload that loses a race for its version removes only its bytes.
export function agentPackageKey(row: Pick<AgentVersionRow, "version" | "sha256" | "uploadedAt">): string {
  return `agent-versions/${row.version}/${row.uploadedAt}-${row.sha256}.tar.gz`;
}

export async function findAgentVersion(db: Db, version: string): Promise<AgentVersionRow | undefined> {
  return db.select().from(agentVersions).where(eq(agentVersions.version, version)).get();
}

// False when the version already existed (whatever its bytes): the caller reads the row
// back to tell a repeat from a conflict.
export async function insertAgentVersion(db: Db, row: AgentVersionRow): Promise<boolean> {
  const res = await db.insert(agentVersions).values(row).onConflictDoNothing().run();
  return res.meta.changes === 1;
}

// Newest first by semver precedence (SQL cannot order semver).
export async function listAgentVersionRows(db: Db): Promise<AgentVersionRow[]> {
  const rows = await db.select().from(agentVersions).all();
  return rows.sort((a, b) => compareSemver(b.version, a.version) || (a.version < b.version ? -1 : a.version > b.version ? 1 : 0));
}

// The pinned version, else the newest uploaded; null before any upload.
export function currentOf(rows: AgentVersionRow[]): { row: AgentVersionRow; pinned: boolean } | null {
  const pinned = rows.find((r) => r.pinnedAt !== null);
  if (pinned) return { row: pinned, pinned: true };
  return rows.length > 0 ? { row: rows[0], pinned: false } : null;
}

export async function currentAgentVersion(db: Db): Promise<{ row: AgentVersionRow; pinned: boolean } | null> {
  return currentOf(await listAgentVersionRows(db));
}

// One statement moves the pin: the named version gets it and every other row loses it,
// only if the version exists (false otherwise, and nothing changed).
export async function pinAgentVersion(db: Db, version: string, now: number): Promise<boolean> {
  const res = await db
    .update(agentVersions)
    .set({ pinnedAt: sql`CASE WHEN ${agentVersions.version} = ${version} THEN ${now} ELSE NULL END` })
    .where(sql`EXISTS (SELECT 1 FROM ${agentVersions} WHERE ${agentVersions.version} = ${version})`)
    .run();
  return res.meta.changes > 0;
}

export async function unpinAgentVersion(db: Db): Promise<void> {
  await db.update(agentVersions).set({ pinnedAt: null }).where(sql`${agentVersions.pinnedAt} IS NOT NULL`).run();
}
