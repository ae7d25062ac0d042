// Upgrades of many agents in waves, as D1 holds them (schema/d1.ts upgrade_rollouts;
// docs/agent-lifecycle.md §Upgrading many agents). Every write is guarded by the state
// it read, so a repeated or racing pass changes nothing more.
import { sql } from "drizzle-orm";
import type { UpgradeState } from "../schema/api.ts";
import { prepared } from "./db.ts";

export type UpgradeRollout = { id: string; version: string; sha256: string; waves: string[][]; currentWave: number; state: "running" | "succeeded" | "stopped"; reason: string | null; createdAt: number };

type Row = Omit<UpgradeRollout, "waves"> & { waves: string };
const parse = (r: Row): UpgradeRollout => ({ ...r, waves: JSON.parse(r.waves) as string[][] });
const COLUMNS = sql.raw("id, version, sha256, waves, current_wave AS currentWave, state, reason, created_at AS createdAt");

export async function insertUpgradeRollout(db: D1Database, r: UpgradeRollout): Promise<void> {
  await prepared(
    db,
    sql`INSERT INTO upgrade_rollouts (id, version, sha256, waves, current_wave, state, reason, created_at, updated_at)
        VALUES (${r.id}, ${r.version}, ${r.sha256}, ${JSON.stringify(r.waves)}, ${r.currentWave}, ${r.state}, ${r.reason}, ${r.createdAt}, ${r.createdAt})`,
  ).run();
}

// Running rollouts; with an agent id, only those whose current wave holds that agent.
export async function runningUpgradeRollouts(db: D1Database, agentId?: string): Promise<UpgradeRollout[]> {
  const rows = await prepared(db, sql`SELECT ${COLUMNS} FROM upgrade_rollouts WHERE state = 'running' ORDER BY created_at LIMIT 50`).all<Row>();
  return rows.results.map(parse).filter((r) => agentId === undefined || (r.waves[r.currentWave - 1] ?? []).includes(agentId));
}

export async function listUpgradeRollouts(db: D1Database, limit = 20): Promise<UpgradeRollout[]> {
  const rows = await prepared(db, sql`SELECT ${COLUMNS} FROM upgrade_rollouts ORDER BY created_at DESC LIMIT ${limit}`).all<Row>();
  return rows.results.map(parse);
}

// The upgrade state each agent reports for `version` (another version's state counts as none).
export async function upgradeStatesOf(db: D1Database, agentIds: string[], version: string): Promise<(UpgradeState | null)[]> {
  const rows = await prepared(db, sql`SELECT id, upgrade FROM agents WHERE id IN (SELECT value FROM json_each(${JSON.stringify(agentIds)}))`).all<{ id: string; upgrade: string | null }>();
  const byId = new Map(rows.results.map((r) => [r.id, r.upgrade === null ? null : (JSON.parse(r.upgrade) as { version: string; state: UpgradeState })]));
  return agentIds.map((id) => {
    const u = byId.get(id);
    return u && u.version === version ? u.state : null;
  });
}

export async function moveUpgradeRollout(db: D1Database, id: string, fromWave: number, to: { currentWave: number; state: UpgradeRollout["state"]; reason: string | null }, now: number): Promise<boolean> {
  const r = await prepared(
    db,
    sql`UPDATE upgrade_rollouts SET current_wave = ${to.currentWave}, state = ${to.state}, reason = ${to.reason}, updated_at = ${now}
         WHERE id = ${id} AND state = 'running' AND current_wave = ${fromWave}`,
  ).run();
  return r.meta.changes > 0;
}
