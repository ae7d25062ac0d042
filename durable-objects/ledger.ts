// The AgentChannel's SQLite ledger as plain functions: commands (dense seq),
// report dedupe, the projection outbox and channel facts. Every read-modify-write
// runs inside storage.transactionSync, so it commits whole or not at all.
import { and, asc, count, eq, gt, inArray, isNull, lte, max, sql } from "drizzle-orm";
import { drizzle, type DrizzleSqliteDODatabase } from "drizzle-orm/durable-sqlite";
import { migrate } from "drizzle-orm/durable-sqlite/migrator";
import migrations from "../schema/migrations/ledger/migrations.js";
import { appliedReports, channelMeta, commandSteps, commands, projectionOutbox } from "../schema/ledger.ts";
import type { Command, CommandBody, Report } from "../schema/agent-api.ts";
import { commandBody, report as reportSchema } from "../schema/agent-api.ts";
import { LIMITS } from "../schema/limits.ts";
import { commandIdFor } from "./rules.ts";

// What the projection writes to D1: an applied report, or a decision the server took
// about this agent's steps (docs/protocol.md §Agent lost, §Revoke).
export type ProjectionJob =
  | { kind: "report"; report: Report }
  | { kind: "agent-lost"; deploymentId: string; at: number }
  | { kind: "revoked"; at: number };
export type OutboxRow = { reportId: string; job: ProjectionJob; attempts: number };

// welcome.expecting is capped: the agent re-sends what it holds anyway.
export const EXPECTING_MAX = 1000;
const CHUNK = 90; // bound parameters per IN (...) list

export class LedgerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LedgerError";
  }
}

const META_AGENT_ID = "agent_id";
const META_ACKED = "acked_seq";

export type Ledger = ReturnType<typeof openLedger>;

export async function migrateLedger(storage: DurableObjectStorage): Promise<void> {
  await migrate(drizzle(storage), migrations);
}

export function openLedger(storage: DurableObjectStorage) {
  const db: DrizzleSqliteDODatabase = drizzle(storage);
  const tx = <T>(fn: () => T): T => storage.transactionSync(fn);

  const getMeta = (key: string): string | null =>
    db.select({ value: channelMeta.value }).from(channelMeta).where(eq(channelMeta.key, key)).get()?.value ?? null;
  const setMeta = (key: string, value: string) =>
    db.insert(channelMeta).values({ key, value }).onConflictDoUpdate({ target: channelMeta.key, set: { value } }).run();

  const head = (): number => db.select({ head: max(commands.seq) }).from(commands).get()?.head ?? 0;

  // A command is finished once none of its steps waits for a final report.
  const markStepFinished = (stepId: string, now: number) => {
    const step = db
      .update(commandSteps)
      .set({ finishedAt: now })
      .where(and(eq(commandSteps.stepId, stepId), isNull(commandSteps.finishedAt)))
      .returning({ seq: commandSteps.commandSeq })
      .get();
    if (!step) return;
    const open = db.select({ n: count() }).from(commandSteps).where(and(isNull(commandSteps.finishedAt), eq(commandSteps.commandSeq, step.seq))).get();
    if ((open?.n ?? 0) === 0) db.update(commands).set({ finishedAt: now }).where(and(eq(commands.seq, step.seq), isNull(commands.finishedAt))).run();
  };

  return {
    head,

    agentId: (): string | null => getMeta(META_AGENT_ID),

    // The first caller names the agent; a different name later means a routing bug.
    bindAgent(agentId: string): void {
      tx(() => {
        const known = getMeta(META_AGENT_ID);
        if (known === null) setMeta(META_AGENT_ID, agentId);
        else if (known !== agentId) throw new LedgerError(`channel belongs to agent ${known}, not ${agentId}`);
      });
    },

    ackedSeq: (): number => Number(getMeta(META_ACKED) ?? 0),

    // `after` is cumulative: the agent holds every seq ≤ after. Never moves back.
    ack(after: number): void {
      tx(() => {
        if (after > Number(getMeta(META_ACKED) ?? 0)) setMeta(META_ACKED, String(after));
      });
    },

    // Idempotent by command id: a known id returns its existing seq.
    enqueue(body: CommandBody, now: number): { seq: number; created: boolean } {
      return tx(() => {
        const existing = db.select({ seq: commands.seq }).from(commands).where(eq(commands.id, body.id)).get();
        if (existing) return { seq: existing.seq, created: false };
        const seq = head() + 1;
        db.insert(commands)
          .values({ seq, id: body.id, body: JSON.stringify(body), createdAt: now, deploymentId: body.deploymentId, agentLostAfterSeconds: body.agentLostAfterSeconds })
          .run();
        for (const s of body.steps) db.insert(commandSteps).values({ stepId: s.stepId, commandSeq: seq }).run();
        return { seq, created: true };
      });
    },

    // §Resync: steps of commands up to `lastSeq` whose final report has not been applied.
    expecting(lastSeq: number, limit = EXPECTING_MAX): string[] {
      return db
        .select({ stepId: commandSteps.stepId })
        .from(commandSteps)
        .where(and(isNull(commandSteps.finishedAt), lte(commandSteps.commandSeq, lastSeq)))
        .orderBy(asc(commandSteps.commandSeq), sql`rowid`) // rows are inserted in step order
        .limit(limit)
        .all()
        .map((r) => r.stepId);
    },

    // §Resync: which of these report ids were applied already (their acknowledgement was lost).
    appliedAmong(ids: readonly string[]): string[] {
      const found = new Set<string>();
      for (let i = 0; i < ids.length; i += CHUNK) {
        const rows = db.select({ id: appliedReports.id }).from(appliedReports).where(inArray(appliedReports.id, ids.slice(i, i + CHUNK))).all();
        for (const r of rows) found.add(r.id);
      }
      return ids.filter((id) => found.has(id));
    },

    openCommands: (): number => db.select({ n: count() }).from(commands).where(isNull(commands.finishedAt)).get()?.n ?? 0,

    commandsAfter(after: number, limit: number = LIMITS.commandsPerPull): Command[] {
      return db
        .select()
        .from(commands)
        .where(gt(commands.seq, after))
        .orderBy(asc(commands.seq))
        .limit(limit)
        .all()
        .map((row) => ({ seq: row.seq, ...commandBody.parse(JSON.parse(row.body)) }));
    },

    // Reports whose step is not in one of this channel's commands.
    foreignReports(agentId: string, reports: readonly Report[]): Report[] {
      const stepsByCommand = new Map<string, Set<string> | null>();
      return reports.filter((r) => {
        const cid = commandIdFor(r.deploymentId, agentId);
        if (!stepsByCommand.has(cid)) {
          const row = db.select({ body: commands.body }).from(commands).where(eq(commands.id, cid)).get();
          stepsByCommand.set(cid, row ? new Set(commandBody.parse(JSON.parse(row.body)).steps.map((s) => s.stepId)) : null);
        }
        return !stepsByCommand.get(cid)?.has(r.stepId);
      });
    },

    // Durable before acknowledged: unseen reports enter applied_reports and the
    // projection outbox in one transaction; seen ones are acknowledged again only.
    applyReports(reports: readonly Report[], now: number): { acked: string[]; applied: string[] } {
      return tx(() => {
        const applied: string[] = [];
        for (const r of reports) {
          const inserted = db
            .insert(appliedReports)
            .values({ id: r.id, appliedAt: now })
            .onConflictDoNothing()
            .returning({ id: appliedReports.id })
            .all();
          if (inserted.length === 0) continue;
          db.insert(projectionOutbox).values({ reportId: r.id, kind: "report", body: JSON.stringify(r), createdAt: now }).run();
          if (r.type === "step-finished") markStepFinished(r.stepId, now);
          applied.push(r.id);
        }
        return { acked: [...new Set(reports.map((r) => r.id))], applied };
      });
    },

    outbox(limit = 100): OutboxRow[] {
      return db
        .select()
        .from(projectionOutbox)
        .orderBy(asc(projectionOutbox.createdAt), asc(projectionOutbox.reportId))
        .limit(limit)
        .all()
        .map((row) => ({ reportId: row.reportId, job: parseJob(row.kind, row.body), attempts: row.attempts }));
    },

    outboxStats(): { pending: number; maxAttempts: number } {
      const row = db.select({ pending: count(), maxAttempts: max(projectionOutbox.attempts) }).from(projectionOutbox).get();
      return { pending: row?.pending ?? 0, maxAttempts: row?.maxAttempts ?? 0 };
    },

    markProjected(reportIds: readonly string[]): void {
      if (reportIds.length === 0) return;
      tx(() => {
        for (let i = 0; i < reportIds.length; i += 50) {
          db.delete(projectionOutbox).where(inArray(projectionOutbox.reportId, reportIds.slice(i, i + 50))).run();
        }
      });
    },

    markProjectionFailed(reportIds: readonly string[], error: string): void {
      tx(() => {
        for (let i = 0; i < reportIds.length; i += 50) {
          db.update(projectionOutbox)
            .set({ attempts: sql`${projectionOutbox.attempts} + 1`, lastError: error.slice(0, 1000) })
            .where(and(inArray(projectionOutbox.reportId, reportIds.slice(i, i + 50))))
            .run();
        }
      });
    },
  };
}

function parseJob(kind: string, body: string): ProjectionJob {
  const value = JSON.parse(body) as Record<string, unknown>;
  if (kind === "report") return { kind, report: reportSchema.parse(value) };
  if (kind === "agent-lost" && typeof value.deploymentId === "string" && typeof value.at === "number") {
    return { kind, deploymentId: value.deploymentId, at: value.at };
  }
  if (kind === "revoked" && typeof value.at === "number") return { kind, at: value.at };
  throw new LedgerError(`projection outbox holds an unknown job: ${kind} ${body.slice(0, 200)}`);
}
