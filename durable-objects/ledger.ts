// The AgentChannel's SQLite ledger as plain functions: commands (dense seq),
// report dedupe, the projection outbox and channel facts. Every read-modify-write
// runs inside storage.transactionSync, so it commits whole or not at all.
import { and, asc, count, eq, gt, inArray, isNotNull, isNull, lte, max, sql } from "drizzle-orm";
import { drizzle, type DrizzleSqliteDODatabase } from "drizzle-orm/durable-sqlite";
import { migrate } from "drizzle-orm/durable-sqlite/migrator";
import migrations from "../schema/migrations/ledger/migrations.js";
import { appliedReports, channelMeta, commandSteps, commands, projectionOutbox } from "../schema/ledger.ts";
import type { Command, CommandBody, Report } from "../schema/agent-api.ts";
import { commandBody, reportIds, storedReport } from "../schema/agent-api.ts";
import { LIMITS } from "../schema/limits.ts";
import type { ProjectionJob } from "../d1/projection.ts";
import { placeOnServerClock } from "./rules.ts";

export type OutboxRow = { order: number; key: string; job: ProjectionJob; attempts: number };

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
    if ((open?.n ?? 0) === 0) {
      db.update(commands).set({ finishedAt: now }).where(and(eq(commands.seq, step.seq), isNull(commands.finishedAt))).run();
      pruneApplied(step.seq);
    }
  };

  // A settled command's report ids are answered by command_steps from now on.
  const pruneApplied = (seq: number) => {
    const ids = db
      .select({ stepId: commandSteps.stepId })
      .from(commandSteps)
      .where(eq(commandSteps.commandSeq, seq))
      .all()
      .flatMap((r) => [reportIds.started(r.stepId), reportIds.finished(r.stepId)]);
    for (let i = 0; i < ids.length; i += CHUNK) db.delete(appliedReports).where(inArray(appliedReports.id, ids.slice(i, i + CHUNK))).run();
  };

  // Steps among these whose final result is in (or that the server ended): every
  // report about them is settled, whether or not its id is still in applied_reports.
  const settledSteps = (stepIds: readonly string[]): Set<string> => {
    const out = new Set<string>();
    const unique = [...new Set(stepIds)];
    for (let i = 0; i < unique.length; i += CHUNK) {
      const rows = db
        .select({ stepId: commandSteps.stepId })
        .from(commandSteps)
        .where(and(inArray(commandSteps.stepId, unique.slice(i, i + CHUNK)), isNotNull(commandSteps.finishedAt)))
        .all();
      for (const r of rows) out.add(r.stepId);
    }
    return out;
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

    // Idempotent by command id: a known id returns its existing seq. A command other than
    // a deploy (cancel, config, restart) has no steps of its own: it is settled once
    // stored (nothing is awaited from it).
    // `coordinated`: its deployment has later waves (deploymentSettled tells the coordinator).
    enqueue(body: CommandBody, now: number, coordinated = false): { seq: number; created: boolean } {
      return tx(() => {
        const existing = db.select({ seq: commands.seq }).from(commands).where(eq(commands.id, body.id)).get();
        if (existing) return { seq: existing.seq, created: false };
        const seq = head() + 1;
        const deploy = body.type === "deploy" ? body : null;
        db.insert(commands)
          .values({
            seq,
            id: body.id,
            body: JSON.stringify(body),
            createdAt: now,
            deploymentId: "deploymentId" in body ? body.deploymentId : "",
            coordinated: deploy !== null && coordinated,
            ...(deploy ? { agentLostAfterSeconds: deploy.agentLostAfterSeconds } : { finishedAt: now }),
          })
          .run();
        for (const s of deploy?.steps ?? []) db.insert(commandSteps).values({ stepId: s.stepId, commandSeq: seq }).run();
        return { seq, created: true };
      });
    },

    // The deploy command of a deployment with later waves has nothing left to wait for
    // on this agent: every step's final result is in, or the server gave up on it
    // (agent-lost). Its coordinator may then start the next wave.
    coordinatedDeploymentSettled(deploymentId: string): boolean {
      const row = db
        .select({ finishedAt: commands.finishedAt, lostAt: commands.lostAt })
        .from(commands)
        .where(and(eq(commands.deploymentId, deploymentId), eq(commands.coordinated, true)))
        .get();
      return row !== undefined && (row.finishedAt !== null || row.lostAt !== null);
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
    // An id of a settled step counts as applied even once pruned from applied_reports.
    appliedAmong(ids: readonly string[]): string[] {
      const found = new Set<string>();
      for (let i = 0; i < ids.length; i += CHUNK) {
        const rows = db.select({ id: appliedReports.id }).from(appliedReports).where(inArray(appliedReports.id, ids.slice(i, i + CHUNK))).all();
        for (const r of rows) found.add(r.id);
      }
      const settled = settledSteps(ids.flatMap((id) => stepOfReportId(id) ?? []));
      return ids.filter((id) => found.has(id) || settled.has(stepOfReportId(id) ?? ""));
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

    // Reports whose step is not a step of this channel's command for that deployment.
    foreignReports(reports: readonly Report[]): Report[] {
      const owner = new Map<string, string>(); // stepId → deploymentId of the command holding it
      const stepIds = [...new Set(reports.map((r) => r.stepId))];
      for (let i = 0; i < stepIds.length; i += CHUNK) {
        const rows = db
          .select({ stepId: commandSteps.stepId, deploymentId: commands.deploymentId })
          .from(commandSteps)
          .innerJoin(commands, eq(commands.seq, commandSteps.commandSeq))
          .where(inArray(commandSteps.stepId, stepIds.slice(i, i + CHUNK)))
          .all();
        for (const r of rows) owner.set(r.stepId, r.deploymentId);
      }
      return reports.filter((r) => owner.get(r.stepId) !== r.deploymentId);
    },

    // Durable before acknowledged: unseen reports enter applied_reports and the
    // projection outbox in one transaction; seen ones — and any about a step already
    // settled — are acknowledged again only. `offsetMs` (server receive time − the
    // batch's sentAt) places each report's `at` on the server's clock.
    applyReports(reports: readonly Report[], receivedAt: number, offsetMs = 0): { acked: string[]; applied: string[] } {
      return tx(() => {
        const applied: string[] = [];
        const settled = settledSteps(reports.map((r) => r.stepId));
        for (const r of reports) {
          if (settled.has(r.stepId)) continue;
          const inserted = db
            .insert(appliedReports)
            .values({ id: r.id, appliedAt: receivedAt })
            .onConflictDoNothing()
            .returning({ id: appliedReports.id })
            .all();
          if (inserted.length === 0) continue;
          const at = placeOnServerClock(r.at, offsetMs, receivedAt);
          db.insert(projectionOutbox).values({ kind: "report", key: r.id, body: JSON.stringify({ report: r, at, receivedAt }), createdAt: receivedAt }).run();
          if (r.type === "step-finished") {
            markStepFinished(r.stepId, receivedAt);
            settled.add(r.stepId);
          }
          applied.push(r.id);
        }
        return { acked: [...new Set(reports.map((r) => r.id))], applied };
      });
    },

    outbox(limit = 100): OutboxRow[] {
      return db
        .select()
        .from(projectionOutbox)
        .orderBy(asc(projectionOutbox.order))
        .limit(limit)
        .all()
        .map((row) => ({ order: row.order, key: row.key, job: parseJob(row.kind, row.body, row.createdAt), attempts: row.attempts }));
    },

    outboxStats(): { pending: number; maxAttempts: number } {
      const row = db.select({ pending: count(), maxAttempts: max(projectionOutbox.attempts) }).from(projectionOutbox).get();
      return { pending: row?.pending ?? 0, maxAttempts: row?.maxAttempts ?? 0 };
    },

    markProjected(orders: readonly number[]): void {
      if (orders.length === 0) return;
      tx(() => {
        for (let i = 0; i < orders.length; i += CHUNK) db.delete(projectionOutbox).where(inArray(projectionOutbox.order, orders.slice(i, i + CHUNK))).run();
      });
    },

    markProjectionFailed(orders: readonly number[], error: string): void {
      tx(() => {
        for (let i = 0; i < orders.length; i += CHUNK) {
          db.update(projectionOutbox)
            .set({ attempts: sql`${projectionOutbox.attempts} + 1`, lastError: error.slice(0, 1000) })
            .where(inArray(projectionOutbox.order, orders.slice(i, i + CHUNK)))
            .run();
        }
      });
    },
  };
}

// The step a report id names (schema/agent-api.ts reportIds); null for any other text.
function stepOfReportId(id: string): string | null {
  return /^(.+):(started|finished)$/.exec(id)?.[1] ?? null;
}

// Rows written before reports carried their placed time hold the bare report: its own
// `at` and the row's creation stand in for them.
function parseJob(kind: string, body: string, createdAt: number): ProjectionJob {
  const value = JSON.parse(body) as Record<string, unknown>;
  if (kind === "report") {
    if ("report" in value && typeof value.at === "number" && typeof value.receivedAt === "number") {
      return { kind, report: storedReport.parse(value.report), at: value.at, receivedAt: value.receivedAt };
    }
    const report = storedReport.parse(value);
    return { kind, report, at: report.at, receivedAt: createdAt };
  }
  if (kind === "agent-lost" && typeof value.deploymentId === "string" && typeof value.at === "number") {
    return { kind, deploymentId: value.deploymentId, at: value.at };
  }
  if (kind === "revoked" && typeof value.at === "number") return { kind, at: value.at };
  throw new LedgerError(`projection outbox holds an unknown job: ${kind} ${body.slice(0, 200)}`);
}
