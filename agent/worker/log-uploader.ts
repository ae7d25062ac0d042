// Uploads each step's output.log to PUT /agent/v1/steps/:stepId/log?offset=N in
// chunks of at most LIMITS.logChunkBytes (8 MiB), polling file growth every 200 ms
// while the step runs and draining at once when it ends. Chunks go over the API
// client's bulk connection pool, never in the way of reports and pulls. A chunk's
// size adapts to the link (chunkSizeAfter): a slow one never gets chunks it cannot
// carry within the request timeout. Progress (`logUploaded`) lives in the journal,
// so a restarted worker resumes where the server is. Output beyond the per-step cap
// (LIMITS.logBytesPerStep, 1 GiB) is not kept (agent/steps/output-cap.ts) nor uploaded.
// An upload that cannot go on — the server says the step has ended (410) or takes
// no more (413), or the file cannot be read — is given up in the journal: the step
// then counts as delivered, so its step-finished report is not held forever.
import { open } from "node:fs/promises";
import { performance } from "node:perf_hooks";
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

// Chunk sizes: the first upload of a step carries up to CHUNK_START_BYTES; a full chunk
// carried within CHUNK_FAST_MS doubles the next one (up to LIMITS.logChunkBytes), a
// failed one or one slower than CHUNK_SLOW_MS halves it (down to CHUNK_MIN_BYTES). On
// a fast link a big log goes in 8 MiB chunks after a few; on a slow one (≈ 100 KB/s) a
// chunk stays well within the 30 s request timeout.
export const CHUNK_START_BYTES = 1024 * 1024;
export const CHUNK_MIN_BYTES = 64 * 1024;
// The chunk limit of servers before R2 log storage: a 413 for a larger chunk is taken
// as "smaller chunks, please" rather than as the end of the step's log.
export const PREVIOUS_CHUNK_LIMIT_BYTES = 256 * 1024;
const CHUNK_FAST_MS = 1_000;
const CHUNK_SLOW_MS = 8_000;

export function chunkSizeAfter(current: number, sent: number, tookMs: number, ok: boolean, max = LIMITS.logChunkBytes): number {
  if (!ok || tookMs > CHUNK_SLOW_MS) return Math.max(CHUNK_MIN_BYTES, Math.floor(current / 2));
  if (sent >= current && tookMs < CHUNK_FAST_MS) return Math.min(max, current * 2);
  return Math.min(max, current);
}

export function uploadTarget(logSizeFinal: number): number {
  return Math.min(logSizeFinal, OUTPUT_CAP_BYTES);
}

// Read off the event loop (a chunk is megabytes): the worker's other work goes on meanwhile.
async function readChunk(path: string, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  const file = await open(path, "r");
  try {
    const { bytesRead } = await file.read(buf, 0, length, offset);
    return buf.subarray(0, bytesRead);
  } finally {
    await file.close();
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
    let maxChunk: number = LIMITS.logChunkBytes;
    let chunkBytes = Math.min(CHUNK_START_BYTES, maxChunk);
    // The next chunk, read while the current one uploads (it is used if the upload ends
    // where it starts, the usual case): reading megabytes overlaps the transfer.
    let ahead: { offset: number; read: Promise<Buffer | null> } | null = null;
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
          const want = Math.min(available - row.logUploaded, chunkBytes);
          let bytes: Buffer;
          try {
            const early = ahead?.offset === row.logUploaded ? await ahead.read : null;
            ahead = null;
            bytes = early !== null && early.length > 0 ? early.subarray(0, want) : await readChunk(paths.log, row.logUploaded, want);
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
          const t0 = performance.now();
          const next = offset + bytes.length;
          // At most the next chunk's largest size (it may double); a failed read is read again.
          const nextWant = Math.min(available - next, Math.min(maxChunk, chunkBytes * 2));
          if (nextWant > 0) ahead = { offset: next, read: readChunk(paths.log, next, nextWant).catch(() => null) };
          const outcome = await api.putLog(stepId, offset, bytes, this.#abort.signal).then(
            (answer) => uploadOutcome(answer, offset),
            (error: unknown) => uploadOutcome({ error }, offset),
          );
          if (this.#stopped) return;
          chunkBytes = chunkSizeAfter(chunkBytes, bytes.length, performance.now() - t0, outcome.kind !== "retry", maxChunk);
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
              if (bytes.length > PREVIOUS_CHUNK_LIMIT_BYTES) {
                maxChunk = chunkBytes = PREVIOUS_CHUNK_LIMIT_BYTES;
                log.warn(`log upload of step ${stepId} at offset ${offset}: the server refused a chunk of ${bytes.length} bytes (${outcome.reason}); going on in chunks of ${maxChunk} bytes`);
                continue;
              }
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
