// The agent config in D1 (docs/agent-lifecycle.md §Config): what an admin asked for
// (desired, merged key by key) and what the agent last said it applies.
import { sql } from "drizzle-orm";
import type { AgentConfig, UpgradeState, UpgradeView } from "../schema/api.ts";
import { prepared } from "./db.ts";

export type ConfigView = { desired: AgentConfig; applied: AgentConfig };

export async function readConfig(db: D1Database, agentId: string): Promise<ConfigView | null> {
  const row = await prepared(db, sql`SELECT desired_config AS desired, applied_config AS applied FROM agents WHERE id = ${agentId}`).first<{
    desired: string | null;
    applied: string | null;
  }>();
  if (!row) return null;
  return { desired: JSON.parse(row.desired ?? "{}") as AgentConfig, applied: JSON.parse(row.applied ?? "{}") as AgentConfig };
}

// Returns the whole desired config after the change; null for an unknown or revoked agent.
export async function mergeDesiredConfig(db: D1Database, agentId: string, change: AgentConfig): Promise<AgentConfig | null> {
  const row = await prepared(
    db,
    sql`UPDATE agents SET desired_config = json_patch(COALESCE(desired_config, '{}'), ${JSON.stringify(change)})
         WHERE id = ${agentId} AND revoked_at IS NULL RETURNING desired_config AS desired`,
  ).first<{ desired: string }>();
  return row ? (JSON.parse(row.desired) as AgentConfig) : null;
}

// docs/agent-lifecycle.md §Upgrade: the last upgrade asked for and how far it went.
export async function setUpgrade(db: D1Database, agentId: string, upgrade: { version: string; state: UpgradeState; reason: string | null }, now: number): Promise<boolean> {
  const r = await prepared(db, sql`UPDATE agents SET upgrade = ${JSON.stringify({ ...upgrade, updatedAt: now })} WHERE id = ${agentId} AND revoked_at IS NULL`).run();
  return r.meta.changes > 0;
}

export async function readUpgrade(db: D1Database, agentId: string): Promise<UpgradeView | null> {
  const row = await prepared(db, sql`SELECT upgrade FROM agents WHERE id = ${agentId}`).first<{ upgrade: string | null }>();
  if (!row?.upgrade) return null;
  const u = JSON.parse(row.upgrade) as { version: string; state: UpgradeState; reason: string | null; updatedAt: number };
  return { version: u.version, state: u.state, reason: u.reason, updatedAt: new Date(u.updatedAt).toISOString() };
}

export async function setAppliedConfig(db: D1Database, agentId: string, config: AgentConfig): Promise<void> {
  await prepared(db, sql`UPDATE agents SET applied_config = ${JSON.stringify(config)} WHERE id = ${agentId} AND revoked_at IS NULL`).run();
}
