// The journal's record of commands that are not deployments (docs/protocol.md §Cancel,
// docs/agent-lifecycle.md §Config, §Restart, §Upgrade): each is stored done, and what it
// asks for is kept — the canceled deployment, the newest config, restart and upgrade
// request — in the transaction that stores it. Kept apart from journal.ts so the rules
// read in one place; journal.ts runs them.
import { eq, inArray } from "drizzle-orm";
import type { LibSQLDatabase } from "drizzle-orm/libsql";
import type { Command } from "../../schema/agent-api.ts";
import { pickConfig } from "../../schema/agent-config.ts";
import type { AgentConfig } from "../../schema/api.ts";
import { canceledDeployments, journalCommands, journalMeta } from "../../schema/journal.ts";
import type { Tx } from "./journal-tx.ts";

const META_CONFIG = "config"; // the newest config command's config (JSON)
const META_RESTART_SEQ = "restartSeq"; // the seq of the newest restart command
const META_UPGRADE = "upgrade"; // the newest upgrade command: {seq, version, sha256}
const META_UPGRADE_HANDLED = "upgradeHandled"; // the seq of the last upgrade request taken care of
const META_UPGRADE_TOLD = "upgradeTold"; // the seq of the last upgrade whose end state the server was told

export type UpgradeRequest = { seq: number; version: string; sha256: string };
// upgrade: the newest request not yet taken care of; untold: the newest one taken care of
// (handed over, failed) whose end state the server has not been told.
export type Controls = { config: AgentConfig | null; restartSeq: number; upgrade: UpgradeRequest | null; untold: UpgradeRequest | null };
type Control = Exclude<Command, { type: "deploy" }>;

export const isControl = (c: Command): c is Control => c.type !== "deploy";

const setMeta = (db: Pick<LibSQLDatabase, "insert">, key: string, value: string) =>
  db.insert(journalMeta).values({ key, value }).onConflictDoUpdate({ target: journalMeta.key, set: { value } });

export async function storeControl(tx: Tx, c: Control, seq: number, now: number): Promise<void> {
  await tx.update(journalCommands).set({ state: "done" }).where(eq(journalCommands.seq, seq));
  switch (c.type) {
    case "cancel":
      // The deploy (stored before or after) runs no more steps; the runner stops what it runs now.
      await tx.insert(canceledDeployments).values({ deploymentId: c.deploymentId, commandSeq: seq, canceledAt: now }).onConflictDoNothing();
      return;
    case "config":
      await setMeta(tx, META_CONFIG, JSON.stringify(c.config));
      return;
    case "restart":
      await setMeta(tx, META_RESTART_SEQ, String(seq));
      return;
    case "upgrade":
      await setMeta(tx, META_UPGRADE, JSON.stringify({ seq, version: c.version, sha256: c.sha256 } satisfies UpgradeRequest));
      return;
  }
}

// upgrade: the newest upgrade request not yet taken care of, or null.
export async function readControls(db: Pick<LibSQLDatabase, "select">): Promise<Controls> {
  const rows = await db.select().from(journalMeta).where(inArray(journalMeta.key, [META_CONFIG, META_RESTART_SEQ, META_UPGRADE, META_UPGRADE_HANDLED, META_UPGRADE_TOLD]));
  const get = (k: string) => rows.find((r) => r.key === k)?.value ?? null;
  const config = get(META_CONFIG);
  const upgrade = get(META_UPGRADE) === null ? null : (JSON.parse(get(META_UPGRADE)!) as UpgradeRequest);
  const handled = Number(get(META_UPGRADE_HANDLED) ?? 0);
  const open = upgrade !== null && upgrade.seq > handled ? upgrade : null;
  const untold = upgrade !== null && upgrade.seq <= handled && upgrade.seq > Number(get(META_UPGRADE_TOLD) ?? 0) ? upgrade : null;
  return { config: config === null ? null : pickConfig(JSON.parse(config)), restartSeq: Number(get(META_RESTART_SEQ) ?? 0), upgrade: open, untold };
}

export const markUpgradeHandled = (db: Pick<LibSQLDatabase, "insert">, seq: number) => setMeta(db, META_UPGRADE_HANDLED, String(seq));
export const markUpgradeTold = (db: Pick<LibSQLDatabase, "insert">, seq: number) => setMeta(db, META_UPGRADE_TOLD, String(seq));

export async function isCanceled(db: Pick<LibSQLDatabase, "select">, deploymentId: string): Promise<boolean> {
  const row = await db.select({ seq: canceledDeployments.commandSeq }).from(canceledDeployments).where(eq(canceledDeployments.deploymentId, deploymentId)).get();
  return row !== undefined;
}
