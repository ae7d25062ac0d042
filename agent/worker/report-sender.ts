// Posts the journal's outbox to POST /agent/v1/reports in batches (≤ 100,
// oldest first) and deletes rows only once acknowledged. A step-finished report
// waits until the step's output is fully uploaded, and holds back the reports of its
// deployment queued after it, so the server sees each deployment's in order. A batch refused with 422 is
// posted again one report at a time: each report the server refuses on its own
// leaves the outbox for the journal's rejected_reports, so one bad report cannot
// block the others forever. Any other refusal keeps everything in the outbox.
import type { Report } from "../../schema/agent-api.ts";
import { LIMITS } from "../../schema/limits.ts";
import { Backoff } from "../backoff.ts";
import { HttpStatusError, shouldRetry } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { ApiClient } from "./api-client.ts";
import type { Journal, OutboxEntry } from "./journal.ts";
import { Waker } from "./waker.ts";
import { trace } from "../trace.ts";

const REJECTED_RETRY_MS = 30_000;

export type ReportSenderDeps = {
  journal: Journal;
  api: ApiClient;
  log: Logger;
  isLogDelivered: (stepId: string) => Promise<boolean>;
  backoff?: Backoff; // default 0.5 s → 30 s
};

// A step-started report is held this long (unless its step already finished), so
// that a quick step's started and finished reports travel in one request.
export const STARTED_HOLD_MS = 30;

// The batch to post now: the oldest entries, except that a step-finished report whose
// output is not fully uploaded yet holds back itself and every later report of the
// same deployment (so the server sees a deployment's reports in order, and a reader
// who sees a step finished reads its whole log), and so does a step-started report
// younger than `holdMs` whose step has not finished (`retryInMs` then says when it may
// go). Reports of other deployments go on: one step's big log holds up no one else.
export async function sendablePrefix(
  entries: OutboxEntry[],
  isLogDelivered: (stepId: string) => Promise<boolean>,
  now = Date.now(),
  holdMs = STARTED_HOLD_MS,
): Promise<{ batch: OutboxEntry[]; retryInMs: number | null }> {
  const finished = new Set(entries.filter((e) => e.report.type === "step-finished").map((e) => e.report.stepId));
  const held = new Set<string>(); // deployments whose remaining reports wait
  const batch: OutboxEntry[] = [];
  let retryInMs: number | null = null;
  for (const e of entries) {
    const deployment = e.report.deploymentId;
    if (held.has(deployment)) continue;
    if (e.report.type === "step-finished" && !(await isLogDelivered(e.report.stepId))) {
      held.add(deployment);
      continue;
    }
    if (e.report.type === "step-started" && !finished.has(e.report.stepId) && now - e.createdAt < holdMs) {
      const wait = holdMs - (now - e.createdAt);
      retryInMs = retryInMs === null ? wait : Math.min(retryInMs, wait);
      held.add(deployment);
      continue;
    }
    batch.push(e);
  }
  return { batch, retryInMs };
}

// What to do when posting a batch failed:
// - back-off: it may pass later (shouldRetry: network, 5xx, 429, a 401 that is not
//   a revocation, a redirect, an answer we cannot read): retry with back-off;
// - split: 422 on several reports: post them one at a time to find the bad one(s);
// - reject: 422 on one report alone: it will never be taken, move it out of the outbox;
// - hold: any other refusal (400, 413, …: a protocol mismatch an upgrade fixes):
//   keep everything, retry every 30 s, never drop.
export type PostFailure = "back-off" | "split" | "reject" | "hold";

export function onPostFailure(e: unknown, batchSize: number): PostFailure {
  if (shouldRetry(e)) return "back-off";
  if (e instanceof HttpStatusError && e.status === 422) return batchSize > 1 ? "split" : "reject";
  return "hold";
}

const describeBatch = (batch: OutboxEntry[]) => {
  const ids = batch.map((x) => x.id);
  return `${batch.length} report(s) ${ids.slice(0, 3).join(", ")}${ids.length > 3 ? ", …" : ""}`;
};

export class ReportSender {
  readonly #deps: ReportSenderDeps;
  readonly #waker = new Waker();
  readonly #backoff: Backoff;
  #running = false;
  #again = false;
  #stopped = false;
  #waitingAfterFailure = false;

  constructor(deps: ReportSenderDeps) {
    this.#deps = deps;
    this.#backoff = deps.backoff ?? new Backoff();
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
    const { journal, log } = this.#deps;
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
        const failure = await this.#send(batch);
        if (failure !== null) await this.#onFailure(failure, batch);
      }
    } catch (e) {
      log.error("report sender stopped on a journal error; retrying in 5 s", e);
      setTimeout(() => this.kick(), 5_000).unref();
    } finally {
      this.#running = false;
    }
  }

  // Posts a batch and deletes what the server acknowledged. Returns the error, if any:
  // journal errors are thrown (the caller's loop stops and restarts later).
  async #send(batch: OutboxEntry[]): Promise<unknown | null> {
    const { journal, api, log } = this.#deps;
    const reports: Report[] = batch.map((e) => e.report);
    let acked: Set<string>;
    try {
      log.debug(`posting ${reports.length} report(s): ${batch.map((e) => e.id).join(", ")}`);
      trace("report-sent", batch.map((e) => e.id).join(","));
      acked = new Set(await api.postReports(reports));
      trace("report-acked", batch.length);
      log.debug(`acked ${acked.size}`);
    } catch (e) {
      return e;
    }
    const done = batch.filter((e) => acked.has(e.id)).map((e) => e.id);
    await journal.deleteReports(done);
    this.#backoff.reset();
    if (done.length < batch.length) {
      const missing = batch.filter((e) => !acked.has(e.id)).map((e) => e.id);
      log.warn(`server acknowledged ${done.length} of ${batch.length} reports; not acknowledged: ${missing.slice(0, 5).join(", ")}`);
      if (done.length === 0) await this.#pause(this.#backoff.next());
    }
    return null;
  }

  async #onFailure(e: unknown, batch: OutboxEntry[]): Promise<void> {
    const { log } = this.#deps;
    if (this.#stopped) return;
    switch (onPostFailure(e, batch.length)) {
      case "back-off": {
        const d = this.#backoff.next();
        log.warn(`posting ${describeBatch(batch)} failed; retrying in ${d} ms`, e);
        return this.#pause(d);
      }
      case "split": {
        log.warn(`the server refused ${describeBatch(batch)} together; posting them one at a time to find the one(s) it refuses`, e);
        for (const entry of batch) {
          if (this.#stopped) return;
          const alone = await this.#send([entry]);
          if (alone === null) continue;
          if (onPostFailure(alone, 1) !== "reject") return this.#onFailure(alone, [entry]); // the loop peeks the outbox again
          await this.#reject(entry, alone as HttpStatusError);
        }
        return;
      }
      case "reject":
        return this.#reject(batch[0], e as HttpStatusError);
      case "hold":
        log.error(`SERVER REJECTED ${describeBatch(batch)}; they stay in the outbox, retrying in ${REJECTED_RETRY_MS / 1000} s`, e);
        return this.#pause(REJECTED_RETRY_MS);
    }
  }

  async #reject(entry: OutboxEntry, e: HttpStatusError): Promise<void> {
    await this.#deps.journal.rejectReport(entry.id, e.status, e.serverError);
    this.#deps.log.error(
      `REPORT REJECTED: the server refused report ${entry.id} on its own (HTTP ${e.status}: ${e.serverError ?? "no reason given"}); ` +
        "it is moved out of the outbox into the journal's rejected_reports table and not sent again",
    );
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
