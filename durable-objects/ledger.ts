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
  // The per-report path (applyReports, and what it calls) runs a few statements per
  // report: written as constant SQL for the object's own statement cache, with lists
  // passed as one JSON parameter, rather than built by the query builder each time —
  // a batch of 100 reports cost ~19 ms of the object's time built, (see the ledger
  // throughput in `npm run bench`). Column names are schema/ledger.ts's.
  const exec = <T extends Record<string, SqlStorageValue>>(query: string, ...params: SqlStorageValue[]): T[] => storage.sql.exec<T>(query, ...params).toArray();

  const getMeta = (key: string): string | null =>
    db.select({ value: channelMeta.value }).from(channelMeta).where(eq(channelMeta.key, key)).get()?.value ?? null;
  const setMeta = (key: string, value: string) =>
    db.insert(channelMeta).values({ key, value }).onConflictDoUpdate({ target: channelMeta.key, set: { value } }).run();

  const head = (): number => db.select({ head: max(commands.seq) }).from(commands).get()?.head ?? 0;

  // A command is finished once none of its steps waits for a final report.
  const markStepFinished = (stepId: string, now: number) => {
    const [step] = exec<{ seq: number }>("UPDATE command_steps SET finished_at = ? WHERE step_id = ? AND finished_at IS NULL RETURNING command_seq AS seq", now, stepId);
    if (!step) return;
    const [open] = exec<{ n: number }>("SELECT count(*) AS n FROM command_steps WHERE finished_at IS NULL AND command_seq = ?", step.seq);
    if ((open?.n ?? 0) === 0) {
      exec("UPDATE commands SET finished_at = ? WHERE seq = ? AND finished_at IS NULL", now, step.seq);
      pruneApplied(step.seq);
    }
  };

  // A settled command's report ids are answered by command_steps from now on.
  const pruneApplied = (seq: number) => {
    const ids = exec<{ stepId: string }>("SELECT step_id AS stepId FROM command_steps WHERE command_seq = ?", seq).flatMap((r) => [reportIds.started(r.stepId), reportIds.finished(r.stepId)]);
    exec("DELETE FROM applied_reports WHERE id IN (SELECT value FROM json_each(?))", JSON.stringify(ids));
  };

  // Steps among these whose final result is in (or that the server ended): every
  // report about them is settled, whether or not its id is still in applied_reports.
  const settledSteps = (stepIds: readonly string[]): Set<string> => {
    const rows = exec<{ stepId: string }>(
      "SELECT step_id AS stepId FROM command_steps WHERE finished_at IS NOT NULL AND step_id IN (SELECT value FROM json_each(?))",
      JSON.stringify([...new Set(stepIds)]),
    );
    return new Set(rows.map((r) => r.stepId));
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
      return this.coordinatedSettled([deploymentId]).length > 0;
    },

    // The same for many deployments in one statement (one pass over the commands).
    coordinatedSettled(deploymentIds: readonly string[]): string[] {
      if (deploymentIds.length === 0) return [];
      return exec<{ id: string }>(
        `SELECT DISTINCT deployment_id AS id FROM commands
          WHERE coordinated = 1 AND (finished_at IS NOT NULL OR lost_at IS NOT NULL) AND deployment_id IN (SELECT value FROM json_each(?))`,
        JSON.stringify(deploymentIds),
      ).map((r) => r.id);
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
      const rows = exec<{ stepId: string; deploymentId: string }>(
        `SELECT s.step_id AS stepId, c.deployment_id AS deploymentId FROM command_steps s JOIN commands c ON c.seq = s.command_seq
          WHERE s.step_id IN (SELECT value FROM json_each(?))`,
        JSON.stringify([...new Set(reports.map((r) => r.stepId))]),
      );
      const owner = new Map(rows.map((r) => [r.stepId, r.deploymentId])); // stepId → deploymentId of the command holding it
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
          const inserted = exec("INSERT INTO applied_reports (id, applied_at) VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING id", r.id, receivedAt);
          if (inserted.length === 0) continue;
          const at = placeOnServerClock(r.at, offsetMs, receivedAt);
          exec("INSERT INTO projection_outbox (kind, key, body, created_at) VALUES ('report', ?, ?, ?)", r.id, JSON.stringify({ report: r, at, receivedAt }), receivedAt);
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
        exec("DELETE FROM projection_outbox WHERE ord IN (SELECT value FROM json_each(?))", JSON.stringify(orders));
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
