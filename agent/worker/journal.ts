// The agent's journal: a libSQL file in the agent home (drizzle tables in
// schema/journal.ts). Commands are stored here before they are acknowledged
// (invariant 4); every state change is written with its report in ONE
// transaction. One connection, and every operation serialized, so
// read-decide-write sequences never interleave.
import { createClient, type Client } from "@libsql/client";
import { and, asc, eq, isNotNull, isNull, lt, ne, sql } from "drizzle-orm";
import { drizzle, type LibSQLDatabase } from "drizzle-orm/libsql";
import { migrate } from "drizzle-orm/libsql/migrator";
import { fileURLToPath, pathToFileURL } from "node:url";
import { command as commandSchema, type Command } from "../../schema/agent-api.ts";
import { journalCommands, journalMeta, journalSteps, rejectedReports } from "../../schema/journal.ts";
import type { AgentConfig } from "../../schema/api.ts";
import { AgentError } from "../errors.ts";
import { OUTPUT_CAP_BYTES } from "../steps/output-cap.ts";
import { isCanceled, isControl, markUpgradeHandled, markUpgradeTold, readControls, storeControl, type Controls } from "./journal-controls.ts";
import { countOutbox, deleteReports, outboxIds, peekOutbox, selectRejected, setAsideRejected, type OutboxEntry, type RejectedReport } from "./journal-outbox.ts";
import { deletePrunable, selectPrunable } from "./journal-prune.ts";
import { interruptUnknown, requeueFinished, selectStepFacts, type StepFacts } from "./journal-resync.ts";
import { insertReport, type Tx } from "./journal-tx.ts";
import { finishedReport, NO_RECORD_REASON, startedReport, type StepOutcome } from "./reports.ts";

export type StepRow = typeof journalSteps.$inferSelect;
export type { OutboxEntry, RejectedReport } from "./journal-outbox.ts";

// A pulled command (agent/worker/command-intake.ts): valid, to run; or never to
// run and stored as ended so that it is acknowledged, with a final report for every
// step id we could read — `failed` when rejected by validation, `interrupted` when
// lost (the server saw it acknowledged but this journal has no record of it).
type EndedCommand = { seq: number; id: string; deploymentId: string | null; stepIds: string[] };
export type IncomingCommand = { kind: "valid"; command: Command } | ({ kind: "rejected"; reason: string } & EndedCommand) | ({ kind: "lost" } & EndedCommand);

const MIGRATIONS = fileURLToPath(new URL("../../schema/migrations/journal", import.meta.url));
const LAST_SEQ = "lastSeq";
export type { UpgradeRequest } from "./journal-controls.ts";

class Mutex {
  #tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}

export class JournalError extends AgentError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, context, options);
    this.name = "JournalError";
  }
}

export class Journal {
  readonly path: string;
  readonly #client: Client;
  readonly #db: LibSQLDatabase;
  readonly #mutex = new Mutex();
  #closed = false;

  private constructor(path: string, client: Client) {
    this.path = path;
    this.#client = client;
    this.#db = drizzle(client);
  }

  static async open(path: string): Promise<Journal> {
    let client: Client;
    try {
      client = createClient({ url: pathToFileURL(path).href, concurrency: 1 });
      await client.execute("PRAGMA journal_mode = WAL");
      await client.execute("PRAGMA synchronous = FULL");
      await client.execute("PRAGMA busy_timeout = 5000");
    } catch (e) {
      throw new JournalError(`cannot open journal ${path}`, { path }, { cause: e });
    }
    const j = new Journal(path, client);
    try {
      await migrate(j.#db, { migrationsFolder: MIGRATIONS });
    } catch (e) {
      client.close();
      throw new JournalError(`cannot migrate journal ${path}`, { path }, { cause: e });
    }
    return j;
  }

  #op<T>(what: string, fn: (db: LibSQLDatabase) => Promise<T>): Promise<T> {
    return this.#mutex.run(async () => {
      if (this.#closed) throw new JournalError(`journal closed (${what})`, { path: this.path });
      try {
        return await fn(this.#db);
      } catch (e) {
        throw e instanceof JournalError ? e : new JournalError(`journal ${what} failed`, { path: this.path }, { cause: e });
      }
    });
  }

  #tx<T>(what: string, fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.#op(what, (db) => db.transaction(fn));
  }

  async close(): Promise<void> {
    await this.#mutex.run(async () => {
      if (this.#closed) return;
      this.#closed = true;
      this.#client.close();
    });
  }

  // ---- commands ----

  lastSeq(): Promise<number> {
    return this.#op("lastSeq", async (db) => {
      const row = await db.select().from(journalMeta).where(eq(journalMeta.key, LAST_SEQ)).get();
      return row ? Number(row.value) : 0;
    });
  }

  // Stores pulled commands and the new lastSeq in one transaction. A command whose
  // id (or seq) is already in the journal, or whose seq is not above lastSeq (its
  // row may have been pruned: lastSeq never is), is not stored again, so never run
  // twice. Returns the seqs newly stored and the lastSeq now durable.
  storeCommands(items: IncomingCommand[], now = Date.now()): Promise<{ stored: number[]; lastSeq: number }> {
    return this.#tx("storeCommands", async (tx) => {
      const meta = await tx.select().from(journalMeta).where(eq(journalMeta.key, LAST_SEQ)).get();
      let lastSeq = meta ? Number(meta.value) : 0;
      const stored: number[] = [];
      for (const item of items) {
        const seq = item.kind === "valid" ? item.command.seq : item.seq;
        const id = item.kind === "valid" ? item.command.id : item.id;
        if (seq <= lastSeq) continue;
        lastSeq = seq;
        const inserted = await tx
          .insert(journalCommands)
          .values({ seq, id, body: JSON.stringify(item.kind === "valid" ? item.command : item), state: item.kind === "valid" ? "pending" : "done", receivedAt: now })
          .onConflictDoNothing()
          .returning({ seq: journalCommands.seq });
        if (inserted.length === 0) continue;
        stored.push(seq);
        if (item.kind === "valid" && isControl(item.command)) {
          await storeControl(tx, item.command, seq, now);
        } else if (item.kind === "valid" && item.command.type === "deploy") {
          const c = item.command;
          await tx
            .insert(journalSteps)
            .values(c.steps.map((s) => ({ stepId: s.stepId, deploymentId: c.deploymentId, commandSeq: seq, position: s.position, state: "pending" as const })))
            .onConflictDoNothing();
        } else if (item.kind !== "valid" && item.deploymentId !== null) {
          const outcome: StepOutcome =
            item.kind === "lost"
              ? { status: "interrupted", exitCode: null, reason: NO_RECORD_REASON }
              : { status: "failed", exitCode: null, reason: `agent rejected the command: ${item.reason}` };
          for (const [position, stepId] of item.stepIds.entries()) {
            const ins = await tx
              .insert(journalSteps)
              .values({ stepId, deploymentId: item.deploymentId, commandSeq: seq, position, state: outcome.status, reason: outcome.reason, finishedAt: now, logSize: 0 })
              .onConflictDoNothing()
              .returning({ stepId: journalSteps.stepId });
            if (ins.length) await insertReport(tx, finishedReport(stepId, item.deploymentId, outcome, now), now);
          }
        }
      }
      await tx
        .insert(journalMeta)
        .values({ key: LAST_SEQ, value: String(lastSeq) })
        .onConflictDoUpdate({ target: journalMeta.key, set: { value: String(lastSeq) } });
      return { stored, lastSeq };
    });
  }

  unfinishedCommandSeqs(): Promise<number[]> {
    return this.#op("unfinishedCommandSeqs", async (db) => {
      const rows = await db.select({ seq: journalCommands.seq }).from(journalCommands).where(ne(journalCommands.state, "done")).orderBy(asc(journalCommands.seq));
      return rows.map((r) => r.seq);
    });
  }

  command(seq: number): Promise<{ command: Command; state: (typeof journalCommands.$inferSelect)["state"] }> {
    return this.#op("command", async (db) => {
      const row = await db.select().from(journalCommands).where(eq(journalCommands.seq, seq)).get();
      if (!row) throw new JournalError(`no command with seq ${seq}`, { seq });
      return { command: commandSchema.parse(JSON.parse(row.body)), state: row.state };
    });
  }

  // Ends a command: its remaining steps end `skipped` (after a failure) or `canceled`
  // (each with its report), all in one transaction.
  endCommand(seq: number, skip: { stepId: string; deploymentId: string }[], skipReason: string, now = Date.now(), status: "skipped" | "canceled" = "skipped"): Promise<void> {
    return this.#tx("endCommand", async (tx) => {
      for (const s of skip) {
        const outcome: StepOutcome = { status, exitCode: null, reason: skipReason };
        const upd = await tx
          .update(journalSteps)
          .set({ state: status, reason: skipReason, finishedAt: now, logSize: 0 })
          .where(and(eq(journalSteps.stepId, s.stepId), eq(journalSteps.state, "pending")))
          .returning({ stepId: journalSteps.stepId });
        if (upd.length) await insertReport(tx, finishedReport(s.stepId, s.deploymentId, outcome, now), now);
      }
      await tx.update(journalCommands).set({ state: "done" }).where(eq(journalCommands.seq, seq));
    });
  }

  // docs/agent-lifecycle.md §Config, §Restart, §Upgrade (agent/worker/journal-controls.ts).
  controls(): Promise<Controls> {
    return this.#op("controls", (db) => readControls(db));
  }

  // The upgrade request `seq` has been carried out, handed over or has failed: never again.
  markUpgradeHandled(seq: number): Promise<void> {
    return this.#op("markUpgradeHandled", async (db) => void (await markUpgradeHandled(db, seq)));
  }

  // The server was told how the upgrade request `seq` ended (succeeded, failed, rolled back).
  markUpgradeTold(seq: number): Promise<void> {
    return this.#op("markUpgradeTold", async (db) => void (await markUpgradeTold(db, seq)));
  }

  // Was a cancel command for this deployment stored (docs/protocol.md §Cancel)?
  isCanceled(deploymentId: string): Promise<boolean> {
    return this.#op("isCanceled", (db) => isCanceled(db, deploymentId));
  }

  // ---- steps ----

  steps(commandSeq: number): Promise<StepRow[]> {
    return this.#op("steps", (db) => db.select().from(journalSteps).where(eq(journalSteps.commandSeq, commandSeq)).orderBy(asc(journalSteps.position)));
  }

  step(stepId: string): Promise<StepRow | undefined> {
    return this.#op("step", (db) => db.select().from(journalSteps).where(eq(journalSteps.stepId, stepId)).get());
  }

  runningStepIds(): Promise<string[]> {
    return this.#op("runningStepIds", async (db) => {
      const rows = await db.select({ stepId: journalSteps.stepId }).from(journalSteps).where(eq(journalSteps.state, "running"));
      return rows.map((r) => r.stepId);
    });
  }

  // pending → running, with its step-started report (same id if regenerated).
  startStep(stepId: string, deploymentId: string, now = Date.now()): Promise<void> {
    return this.#tx("startStep", async (tx) => {
      const upd = await tx
        .update(journalSteps)
        .set({ state: "running", startedAt: now, pid: null, exitCode: null, reason: null })
        .where(and(eq(journalSteps.stepId, stepId), eq(journalSteps.state, "pending")))
        .returning({ stepId: journalSteps.stepId });
      if (upd.length === 0) throw new JournalError(`step ${stepId} is not pending`, { stepId });
      await tx
        .update(journalCommands)
        .set({ state: "running" })
        .where(and(eq(journalCommands.state, "pending"), sql`${journalCommands.seq} = (select ${journalSteps.commandSeq} from ${journalSteps} where ${journalSteps.stepId} = ${stepId})`));
      await insertReport(tx, startedReport(stepId, deploymentId, now), now);
    });
  }

  setStepPid(stepId: string, pid: number): Promise<void> {
    return this.#op("setStepPid", async (db) => {
      await db.update(journalSteps).set({ pid }).where(eq(journalSteps.stepId, stepId));
    });
  }

  // running → final state, with its step-finished report, in one transaction.
  finishStep(stepId: string, deploymentId: string, outcome: StepOutcome, logSize: number, now = Date.now()): Promise<void> {
    return this.#tx("finishStep", async (tx) => {
      const upd = await tx
        .update(journalSteps)
        .set({ state: outcome.status, exitCode: outcome.exitCode, reason: outcome.reason, finishedAt: now, logSize, outputs: outcome.outputs ? JSON.stringify(outcome.outputs) : null })
        .where(and(eq(journalSteps.stepId, stepId), eq(journalSteps.state, "running")))
        .returning({ stepId: journalSteps.stepId });
      if (upd.length === 0) throw new JournalError(`step ${stepId} is not running`, { stepId });
      await insertReport(tx, finishedReport(stepId, deploymentId, outcome, now), now);
    });
  }

  // A `retry: "safe"` step whose run was interrupted goes back to pending.
  resetStepForRetry(stepId: string): Promise<void> {
    return this.#op("resetStepForRetry", async (db) => {
      await db.update(journalSteps).set({ state: "pending", pid: null }).where(and(eq(journalSteps.stepId, stepId), eq(journalSteps.state, "running")));
    });
  }

  // ---- log upload progress ----

  setLogUploaded(stepId: string, bytes: number): Promise<void> {
    return this.#op("setLogUploaded", async (db) => {
      await db.update(journalSteps).set({ logUploaded: bytes }).where(eq(journalSteps.stepId, stepId));
    });
  }

  // The step's output will not be uploaded further (`why`: the server's answer or the
  // local trouble); it counts as delivered from now on, across restarts.
  giveUpLog(stepId: string, why: string): Promise<void> {
    return this.#op("giveUpLog", async (db) => {
      await db.update(journalSteps).set({ logGivenUp: why.slice(0, 500) }).where(eq(journalSteps.stepId, stepId));
    });
  }

  // Bytes cut from a running step's output.log to keep it within the cap.
  addOutputDropped(stepId: string, bytes: number): Promise<void> {
    return this.#op("addOutputDropped", async (db) => {
      await db
        .update(journalSteps)
        .set({ outputDropped: sql`${journalSteps.outputDropped} + ${bytes}` })
        .where(eq(journalSteps.stepId, stepId));
    });
  }

  // Ended steps whose output the server does not fully hold yet (up to the per-step cap).
  stepsAwaitingLogUpload(): Promise<string[]> {
    return this.#op("stepsAwaitingLogUpload", async (db) => {
      const rows = await db
        .select({ stepId: journalSteps.stepId })
        .from(journalSteps)
        .where(and(isNotNull(journalSteps.logSize), isNull(journalSteps.logGivenUp), sql`${journalSteps.logUploaded} < min(${journalSteps.logSize}, ${OUTPUT_CAP_BYTES})`));
      return rows.map((r) => r.stepId);
    });
  }

  // ---- retention (agent/worker/journal-prune.ts) ----

  // Commands fully delivered whose steps all ended before `cutoff`, oldest first.
  prunableCommands(cutoff: number, limit: number): Promise<{ seq: number; stepIds: string[]; deploymentId: string | null }[]> {
    return this.#op("prunableCommands", (db) => selectPrunable(db, cutoff, OUTPUT_CAP_BYTES, limit));
  }

  // Removes those commands and their steps if they still qualify; meta.lastSeq stays.
  // Reports set aside as rejected go after the same period.
  pruneCommands(seqs: number[], cutoff: number): Promise<number[]> {
    return this.#tx("pruneCommands", async (tx) => {
      await tx.delete(rejectedReports).where(lt(rejectedReports.rejectedAt, cutoff));
      return deletePrunable(tx, seqs, cutoff, OUTPUT_CAP_BYTES);
    });
  }

  // ---- outbox ----

  outboxCount(): Promise<number> {
    return this.#op("outboxCount", countOutbox);
  }

  peekOutbox(limit: number): Promise<OutboxEntry[]> {
    return this.#op("peekOutbox", (db) => peekOutbox(db, limit));
  }

  // A report the server refused on its own (422), set aside (agent/worker/journal-outbox.ts).
  rejectReport(id: string, status: number, error: string | null, now = Date.now()): Promise<boolean> {
    return this.#tx("rejectReport", (tx) => setAsideRejected(tx, id, status, error, now));
  }

  rejectedReports(): Promise<RejectedReport[]> {
    return this.#op("rejectedReports", selectRejected);
  }

  // Ids of the reports in the outbox, oldest first (hello.reports).
  outboxIds(limit: number): Promise<string[]> {
    return this.#op("outboxIds", (db) => outboxIds(db, limit));
  }

  // ---- resync (docs/protocol.md §Resync) ----

  // What the journal knows of each step: its state and whether its step-finished
  // report still waits in the outbox. Steps it has no record of are absent.
  stepFacts(stepIds: string[]): Promise<StepFacts> {
    return this.#op("stepFacts", (db) => selectStepFacts(db, stepIds));
  }

  // An ended step's step-finished report rebuilt (same id) and its output marked for
  // upload again; false if the step has not ended (agent/worker/journal-resync.ts).
  requeueFinishedReport(stepId: string, now = Date.now()): Promise<boolean> {
    return this.#tx("requeueFinishedReport", (tx) => requeueFinished(tx, stepId, now));
  }

  // A step the journal has no record of, recorded and reported `interrupted` (never
  // run); null when no command in the journal names it (agent/worker/journal-resync.ts).
  interruptUnknownStep(stepId: string, reason: string, now = Date.now()): Promise<{ deploymentId: string } | null> {
    return this.#tx("interruptUnknownStep", (tx) => interruptUnknown(tx, stepId, reason, now));
  }

  deleteReports(ids: string[]): Promise<void> {
    if (ids.length === 0) return Promise.resolve();
    return this.#op("deleteReports", (db) => deleteReports(db, ids));
  }
}
