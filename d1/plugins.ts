// Plug-in versions in D1 (docs/plugins.md): the row lists and describes a version and
// names its package bytes in R2 by sha256. A version is immutable: rows are inserted
// once and deleted, never updated.
import { and, asc, eq, inArray, notExists, sql } from "drizzle-orm";
import { deploymentPlugins, deployments, plugins } from "../schema/d1.ts";
import { compareSemver } from "../schema/plugin.ts";
import { DEPLOYMENT_STATUSES, FINAL_DEPLOYMENT_STATUSES } from "../schema/steps.ts";
import type { Db } from "./db.ts";

export type PluginRow = typeof plugins.$inferSelect;
export type PluginSummary = { id: string; name: string; description: string; latest: string; versions: string[] };

const UNFINISHED_DEPLOYMENT = DEPLOYMENT_STATUSES.filter((s) => !(FINAL_DEPLOYMENT_STATUSES as readonly string[]).includes(s));

// The R2 key of a version's package bytes, derived from its row. Including the sha256
// and the upload time makes every successful upload write an object no other upload
// writes: an upload racing another with different bytes for the same version puts its
// bytes beside the winner's, never over them, and removes only its own object once the
// row shows it lost; a DELETE removes the object of the row it deleted, never one a
// re-upload of the same version has just written.
export function pluginObjectKey(row: Pick<PluginRow, "id" | "version" | "sha256" | "uploadedAt">): string {
  return `plugins/${row.id}/${row.version}/${row.uploadedAt}-${row.sha256}.tgz`;
}

export async function findPlugin(db: Db, id: string, version: string): Promise<PluginRow | undefined> {
  return db.select().from(plugins).where(and(eq(plugins.id, id), eq(plugins.version, version))).get();
}

// False when the version already existed (whatever its bytes): the caller reads the row
// back to tell a repeat from a conflict.
export async function insertPlugin(db: Db, row: PluginRow): Promise<boolean> {
  const res = await db.insert(plugins).values(row).onConflictDoNothing().run();
  return res.meta.changes === 1;
}

// One entry per id, sorted by id; versions newest first by semver precedence, the
// name and description those of the latest version.
export async function listPluginSummaries(db: Db): Promise<PluginSummary[]> {
  const rows = await db
    .select({ id: plugins.id, version: plugins.version, name: plugins.name, description: plugins.description })
    .from(plugins)
    .orderBy(asc(plugins.id))
    .all();
  const byId = new Map<string, typeof rows>();
  for (const r of rows) byId.set(r.id, [...(byId.get(r.id) ?? []), r]);
  return [...byId.entries()].map(([id, versions]) => {
    versions.sort((a, b) => compareSemver(b.version, a.version));
    return { id, name: versions[0].name, description: versions[0].description, latest: versions[0].version, versions: versions.map((v) => v.version) };
  });
}

export type DeleteOutcome = { outcome: "deleted"; row: PluginRow } | { outcome: "in-use"; deploymentIds: string[] } | { outcome: "missing" };

// One statement checks and deletes, so a deployment that records its use of the version
// (in the same batch as it checks the version exists) and this delete cannot both win.
export async function deletePluginVersion(db: Db, id: string, version: string): Promise<DeleteOutcome> {
  const usedByUnfinished = and(eq(deploymentPlugins.pluginId, id), eq(deploymentPlugins.version, version), inArray(deployments.status, UNFINISHED_DEPLOYMENT));
  const joinDeployments = eq(deployments.id, deploymentPlugins.deploymentId);
  // A deployment may end between the refused delete and the look-up of its users: then
  // the delete is simply tried again.
  for (let attempt = 0; ; attempt++) {
    const row = await db
      .delete(plugins)
      .where(
        and(
          eq(plugins.id, id),
          eq(plugins.version, version),
          notExists(db.select({ one: sql`1` }).from(deploymentPlugins).innerJoin(deployments, joinDeployments).where(usedByUnfinished)),
        ),
      )
      .returning()
      .get();
    if (row) return { outcome: "deleted", row };
    if (!(await findPlugin(db, id, version))) return { outcome: "missing" };
    const using = await db
      .select({ deploymentId: deploymentPlugins.deploymentId })
      .from(deploymentPlugins)
      .innerJoin(deployments, joinDeployments)
      .where(usedByUnfinished)
      .orderBy(asc(deploymentPlugins.deploymentId))
      .limit(5)
      .all();
    if (using.length > 0 || attempt >= 2) return { outcome: "in-use", deploymentIds: using.map((u) => u.deploymentId) };
  }
}
