// Posts the journal's outbox to POST /agent/v1/reports in batches (≤ 100,
// oldest first) and deletes rows only once acknowledged. A step-finished report
// waits until the step's output is fully uploaded, and holds back the reports
// queued after it, so the server sees them in order.
import type { Report } from "../../schema/agent-api.ts";
import { LIMITS } from "../../schema/limits.ts";
import { Backoff } from "../backoff.ts";
import { isTransient, ProtocolError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { ApiClient } from "./api-client.ts";
import type { Journal, OutboxEntry } from "./journal.ts";
import { Waker } from "./waker.ts";

const REJECTED_RETRY_MS = 30_000;

export type ReportSenderDeps = {
  journal: Journal;
  api: ApiClient;
  log: Logger;
  isLogDelivered: (stepId: string) => Promise<boolean>;
};

// A step-started report is held this long (unless its step already finished), so
// that a quick step's started and finished reports travel in one request.
export const STARTED_HOLD_MS = 30;

// The batch to post now: the oldest entries up to (not including) the first
// step-finished report whose output is not fully uploaded yet, or the first
// step-started report younger than `holdMs` whose step has not finished
// (`retryInMs` then says when it may go).
export async function sendablePrefix(
  entries: OutboxEntry[],
  isLogDelivered: (stepId: string) => Promise<boolean>,
  now = Date.now(),
  holdMs = STARTED_HOLD_MS,
): Promise<{ batch: OutboxEntry[]; retryInMs: number | null }> {
  const finished = new Set(entries.filter((e) => e.report.type === "step-finished").map((e) => e.report.stepId));
  const batch: OutboxEntry[] = [];
  for (const e of entries) {
    if (e.report.type === "step-finished" && !(await isLogDelivered(e.report.stepId))) break;
    if (e.report.type === "step-started" && !finished.has(e.report.stepId) && now - e.createdAt < holdMs) {
      return { batch, retryInMs: holdMs - (now - e.createdAt) };
    }
    batch.push(e);
  }
  return { batch, retryInMs: null };
}

export class ReportSender {
  readonly #deps: ReportSenderDeps;
  readonly #waker = new Waker();
  readonly #backoff = new Backoff();
  #running = false;
  #again = false;
  #stopped = false;
  #waitingAfterFailure = false;

  constructor(deps: ReportSenderDeps) {
    this.#deps = deps;
  }

  // New reports (or a log finished uploading): send now, unless backing off after a failure.
  kick(): void {
    if (this.#stopped) return;
    this.#again = true;
    if (!this.#running) void this.#run();
  }

  // The server is reachable again (channel up): cut a back-off short.
  retryNow(): void {
    this.#backoff.reset();
    if (this.#waitingAfterFailure) this.#waker.wake();
    this.kick();
  }

  stop(): void {
    this.#stopped = true;
    this.#waker.wake();
  }

  async #run(): Promise<void> {
    const { journal, api, log } = this.#deps;
    this.#running = true;
    try {
      while (!this.#stopped) {
        this.#again = false;
        const { batch, retryInMs } = await sendablePrefix(await journal.peekOutbox(LIMITS.reportsPerBatch), this.#deps.isLogDelivered);
        if (batch.length === 0) {
          if (this.#again) continue;
          if (retryInMs !== null) setTimeout(() => this.kick(), retryInMs + 1).unref();
          break;
        }
        const reports: Report[] = batch.map((e) => e.report);
        try {
          log.debug(`posting ${reports.length} report(s): ${batch.map((e) => e.id).join(", ")}`);
          const acked = new Set(await api.postReports(reports));
          log.debug(`acked ${acked.size}`);
          const done = batch.filter((e) => acked.has(e.id)).map((e) => e.id);
          await journal.deleteReports(done);
          this.#backoff.reset();
          if (done.length < batch.length) {
            const missing = batch.filter((e) => !acked.has(e.id)).map((e) => e.id);
            log.warn(`server acknowledged ${done.length} of ${batch.length} reports; not acknowledged: ${missing.slice(0, 5).join(", ")}`);
            if (done.length === 0) await this.#pause(this.#backoff.next());
          }
        } catch (e) {
          if (this.#stopped) break;
          const ids = batch.map((x) => x.id);
          const context = `${batch.length} report(s) ${ids.slice(0, 3).join(", ")}${ids.length > 3 ? ", …" : ""}`;
          if (isTransient(e) || e instanceof ProtocolError) {
            const d = this.#backoff.next();
            log.warn(`posting ${context} failed; retrying in ${d} ms`, e);
            await this.#pause(d);
          } else {
            log.error(`SERVER REJECTED ${context}; they stay in the outbox, retrying in ${REJECTED_RETRY_MS / 1000} s`, e);
            await this.#pause(REJECTED_RETRY_MS);
          }
        }
      }
    } catch (e) {
      log.error("report sender stopped on a journal error; retrying in 5 s", e);
      setTimeout(() => this.kick(), 5_000).unref();
    } finally {
      this.#running = false;
    }
  }

  async #pause(ms: number): Promise<void> {
    this.#waitingAfterFailure = true;
    try {
      await this.#waker.wait(ms);
    } finally {
      this.#waitingAfterFailure = false;
    }
  }
}
