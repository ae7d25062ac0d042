// Uploads each step's output.log to PUT /agent/v1/steps/:stepId/log?offset=N in
// chunks of at most 256 KiB, polling file growth every 200 ms while the step
// runs and draining at once when it ends. Progress (`logUploaded`) lives in the
// journal, so a restarted worker resumes where the server is. Output beyond
// the per-step cap (16 MiB) is not kept (agent/steps/output-cap.ts) nor uploaded.
// An upload that cannot go on — the server says the step has ended (410) or takes
// no more (413), or the file cannot be read — is given up in the journal: the step
// then counts as delivered, so its step-finished report is not held forever.
import { openSync, readSync, closeSync } from "node:fs";
import { LIMITS } from "../../schema/limits.ts";
import { Backoff } from "../backoff.ts";
import { describeCause } from "../errors.ts";
import type { Logger } from "../log.ts";
import { OUTPUT_CAP_BYTES } from "../steps/output-cap.ts";
import { logSize, stepPaths } from "../steps/shell-step.ts";
import type { ApiClient } from "./api-client.ts";
import type { Journal, StepRow } from "./journal.ts";
import { uploadOutcome } from "./upload-outcome.ts";
import { Waker } from "./waker.ts";

const POLL_MS = 200;

export function uploadTarget(logSizeFinal: number): number {
  return Math.min(logSizeFinal, OUTPUT_CAP_BYTES);
}

function readChunk(path: string, offset: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  const fd = openSync(path, "r");
  try {
    const n = readSync(fd, buf, 0, length, offset);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

export type LogUploaderDeps = {
  journal: Journal;
  api: ApiClient;
  stepsDir: string;
  log: Logger;
  onDelivered: (stepId: string) => void; // the step's output is fully uploaded (or given up)
  newBackoff?: () => Backoff; // each step's upload backs off on its own (default 0.5 s → 30 s)
};

export class LogUploader {
  readonly #deps: LogUploaderDeps;
  readonly #watches = new Map<string, Waker>();
  readonly #abort = new AbortController();
  #stopped = false;

  constructor(deps: LogUploaderDeps) {
    this.#deps = deps;
  }

  // Starts uploading a step's output (no-op if already watched).
  watch(stepId: string): void {
    if (this.#stopped || this.#watches.has(stepId)) return;
    const waker = new Waker();
    this.#watches.set(stepId, waker);
    void this.#loop(stepId, waker);
  }

  // The step ended (its final size is in the journal): drain now.
  stepEnded(stepId: string): void {
    const w = this.#watches.get(stepId);
    if (w) w.wake();
    else this.watch(stepId);
  }

  // After a restart: ended steps whose output the server does not fully hold.
  async resumePending(): Promise<void> {
    for (const stepId of await this.#deps.journal.stepsAwaitingLogUpload()) this.watch(stepId);
  }

  // Whether a step-finished report may be posted: the server holds the whole (capped)
  // output, or its upload was given up.
  isDelivered(row: StepRow | undefined): boolean {
    if (!row) return true;
    if (row.logGivenUp !== null) return true;
    if (row.logSize === null) return false;
    return row.logUploaded >= uploadTarget(row.logSize);
  }

  // The server is reachable again: cut every back-off short.
  retryNow(): void {
    for (const w of this.#watches.values()) w.wake();
  }

  stop(): void {
    this.#stopped = true;
    this.#abort.abort();
    for (const w of this.#watches.values()) w.wake();
  }

  async #loop(stepId: string, waker: Waker): Promise<void> {
    const { journal, api, log } = this.#deps;
    const paths = stepPaths(this.#deps.stepsDir, stepId);
    const backoff = this.#deps.newBackoff?.() ?? new Backoff();
    let delivered = false;
    const giveUp = async (why: string) => {
      await journal.giveUpLog(stepId, why);
      delivered = true;
    };
    try {
      while (!this.#stopped) {
        const row = await journal.step(stepId);
        if (!row) return;
        if (row.logGivenUp !== null) return void (delivered = true);
        const ended = row.logSize !== null;
        const available = ended ? uploadTarget(row.logSize!) : Math.min(logSize(paths), OUTPUT_CAP_BYTES);
        if (row.logUploaded < available) {
          const want = Math.min(available - row.logUploaded, LIMITS.logChunkBytes);
          let bytes: Buffer;
          try {
            bytes = readChunk(paths.log, row.logUploaded, want);
          } catch (e) {
            log.error(`cannot read output of step ${stepId}; its log upload is abandoned`, e);
            return await giveUp(`output unreadable: ${describeCause(e)}`);
          }
          if (bytes.length === 0) {
            if (ended) {
              log.error(`output of step ${stepId} is shorter than recorded (${row.logUploaded} < ${available} bytes); log upload abandoned`);
              return await giveUp(`output shorter than recorded (${row.logUploaded} < ${available} bytes)`);
            }
            await waker.wait(POLL_MS);
            continue;
          }
          const offset = row.logUploaded;
          const outcome = await api.putLog(stepId, offset, bytes, this.#abort.signal).then(
            (answer) => uploadOutcome(answer, offset),
            (error: unknown) => uploadOutcome({ error }, offset),
          );
          if (this.#stopped) return;
          switch (outcome.kind) {
            case "gap":
              log.warn(`log upload of step ${stepId} at offset ${offset}: server holds ${outcome.length} bytes; resuming there`);
            // falls through: the server's length is where the upload goes on
            case "stored":
              await journal.setLogUploaded(stepId, outcome.length);
              backoff.reset();
              continue;
            case "closed":
              log.warn(`the server says step ${stepId} has ended (HTTP 410; it holds ${outcome.length} bytes of its output): no more of its output is uploaded`);
              await journal.setLogUploaded(stepId, outcome.length);
              return await giveUp(`the server ended the step (410) holding ${outcome.length} bytes`);
            case "too-large":
              log.error(`log upload of step ${stepId} at offset ${offset} abandoned: the server refuses more output for this step (${outcome.reason})`);
              return await giveUp(`the server refuses more output for this step: ${outcome.reason}`);
            case "rejected":
              log.error(`log upload of step ${stepId} at offset ${offset} abandoned: the server rejected it`, outcome.error);
              return await giveUp(`the server rejected it: ${describeCause(outcome.error)}`);
            case "retry": {
              const d = backoff.next();
              log.warn(`log upload of step ${stepId} at offset ${offset} failed; retrying in ${d} ms`, outcome.error);
              await waker.wait(d);
              continue;
            }
          }
        }
        if (ended) {
          delivered = true;
          return;
        }
        await waker.wait(POLL_MS);
      }
    } catch (e) {
      // journal trouble: the next worker start resumes from the journal
      if (!this.#stopped) log.error(`log upload of step ${stepId} stopped`, e);
    } finally {
      this.#watches.delete(stepId);
      if (delivered) this.#deps.onDelivered(stepId);
    }
  }
}
