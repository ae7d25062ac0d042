// Pulls commands over HTTPS: GET /agent/v1/commands?after=<lastSeq>. `after` is
// the cumulative acknowledgement, so it only ever names commands already
// committed to the journal (invariant 4). Pulls happen when the channel says
// there is something new, right after storing new commands (to acknowledge them
// at once: see below), every 5 min while the channel is up, and as back-to-back
// long-polls (wait=25) while it is down.
import { LIMITS } from "../../schema/limits.ts";
import { CommandHeadBehindError, HttpStatusError, shouldRetry } from "../errors.ts";
import { Backoff } from "../backoff.ts";
import type { Logger } from "../log.ts";
import type { ApiClient } from "./api-client.ts";
import { classifyCommands } from "./command-intake.ts";
import type { Journal } from "./journal.ts";
import { Waker } from "./waker.ts";
import { trace } from "../trace.ts";

// A safety net only: while the channel is up, the server's `commands` notification says
// when to pull, and a channel gone silent is reconnected (its welcome carries the head).
// Each pull wakes the agent's Durable Object, so an idle agent pulls rarely.
export const PERIODIC_PULL_MS = 300_000;
const MIN_LONG_POLL_CYCLE_MS = 1_000; // a server that ignores `wait` must not make us spin
const REJECTED_RETRY_MS = 30_000; // docs/agent-api.md: any other 4xx is retried every 30 s
const JOURNAL_RETRY_EXTRA_MS = 5_000;

// onStored: commands to run were stored. onReportsQueued: commands that will not run
// (rejected, lost) were stored as ended, with their steps' final reports to send.
// backoff: between failed pulls (default 0.5 s → 30 s); reset by every successful one.
export type CommandPullerDeps = { journal: Journal; api: ApiClient; log: Logger; onStored: () => void; onReportsQueued: () => void; backoff?: Backoff };

export class CommandPuller {
  readonly #deps: CommandPullerDeps;
  readonly #waker = new Waker();
  readonly #abort = new AbortController();
  #lastSeq = 0;
  #kicked = true;
  #channelUp = false;
  #stopped = false;
  #done: Promise<void> = Promise.resolve();

  constructor(deps: CommandPullerDeps) {
    this.#deps = deps;
  }

  get lastSeq(): number {
    return this.#lastSeq;
  }

  async start(): Promise<void> {
    this.#lastSeq = await this.#deps.journal.lastSeq();
    this.#done = this.#loop();
  }

  // The server's head seq (welcome / commands notification).
  notifyHead(head: number): void {
    if (head > this.#lastSeq) this.#kick();
  }

  setChannelUp(up: boolean): void {
    if (this.#channelUp === up) return;
    this.#channelUp = up;
    this.#kick();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#abort.abort();
    this.#waker.wake();
    await this.#done;
  }

  #kick(): void {
    this.#kicked = true;
    this.#waker.wake();
  }

  #logEnded(items: ReturnType<typeof classifyCommands>["items"], acked: number): void {
    const { log } = this.#deps;
    const lost = items.filter((i) => i.kind === "lost");
    if (lost.length > 0) {
      log.error(
        `the server saw command(s) up to seq ${acked} acknowledged, but this journal has no record of seq ${lost.map((i) => i.seq).join(", ")}: ` +
          "the journal was lost or restored from an older copy and they may have run already, so they are not run; their steps are reported interrupted",
      );
      const blind = lost.filter((i) => i.deploymentId === null || i.stepIds.length === 0);
      if (blind.length > 0) log.error(`lost command(s) seq ${blind.map((i) => i.seq).join(", ")} name no readable deployment or steps: nothing can be reported for them`);
    }
    for (const item of items) {
      if (item.kind === "rejected") log.error(`REJECTED command seq ${item.seq} (${item.id}): ${item.reason}; its steps are reported failed`);
    }
  }

  // Logs a failed pull (or a failure to store what it brought) and says how long to
  // wait before pulling again. lastSeq is never touched: `after` only ever names
  // what the journal holds.
  #afterFailure(e: unknown, backoff: Backoff): number {
    const { log } = this.#deps;
    const after = this.#lastSeq;
    if (shouldRetry(e)) {
      const d = backoff.next();
      if (e instanceof CommandHeadBehindError) log.error(`pull after=${after} refused: the server's head is behind this journal; retrying in ${d} ms`, e);
      else log.warn(`pull after=${after} failed; retrying in ${d} ms`, e);
      return d;
    }
    if (e instanceof HttpStatusError) {
      log.error(`SERVER REJECTED pull after=${after}; retrying in ${REJECTED_RETRY_MS / 1000} s`, e);
      return REJECTED_RETRY_MS;
    }
    // The journal could not store what was pulled: nothing was acknowledged, so the
    // same commands come again with the next pull.
    const d = backoff.next() + JOURNAL_RETRY_EXTRA_MS;
    log.error(`cannot store pulled commands; pulling after=${after} again in ${d} ms`, e);
    return d;
  }

  async #loop(): Promise<void> {
    const { journal, api, log, onStored } = this.#deps;
    const backoff = this.#deps.backoff ?? new Backoff();
    while (!this.#stopped) {
      if (!this.#kicked && this.#channelUp) await this.#waker.wait(PERIODIC_PULL_MS);
      if (this.#stopped) break;
      this.#kicked = false;
      const wait = this.#channelUp ? 0 : LIMITS.longPollSeconds;
      const t0 = Date.now();
      try {
        log.debug(`pull after=${this.#lastSeq} wait=${wait}`);
        const res = await api.pull(this.#lastSeq, wait, this.#abort.signal);
        log.debug(`pulled ${res.commands.length} command(s), head ${res.head}`);
        if (res.commands.length > 0) trace("pulled", res.head);
        const intake = classifyCommands(res.commands, this.#lastSeq, res.acked);
        let storedAny = false;
        if (intake.items.length > 0) {
          const r = await journal.storeCommands(intake.items);
          this.#lastSeq = r.lastSeq;
          storedAny = r.stored.length > 0;
          const stored = intake.items.filter((i) => r.stored.includes(i.kind === "valid" ? i.command.seq : i.seq));
          this.#logEnded(stored, res.acked);
          if (stored.some((i) => i.kind !== "valid")) this.#deps.onReportsQueued();
          const toRun = stored.flatMap((i) => (i.kind === "valid" ? [i.command.seq] : []));
          if (toRun.length > 0) {
            trace("stored", toRun.join(","));
            log.info(`stored command(s) seq ${toRun.join(", ")}`);
            onStored();
          }
        }
        backoff.reset();
        if (intake.problem) {
          const d = backoff.next() + JOURNAL_RETRY_EXTRA_MS;
          log.error(`cannot store a pulled command (${intake.problem}); retrying in ${d} ms`);
          await this.#waker.wait(d);
        } else if (res.head > this.#lastSeq || storedAny) {
          // More than one page, or new commands to acknowledge now: the server's `acked`
          // is what tells a journal lost later that a command may have run, so the
          // window between storing (and starting) a command and acknowledging it is
          // kept to one request.
          this.#kicked = true;
        } else if (!this.#channelUp && res.commands.length === 0 && Date.now() - t0 < MIN_LONG_POLL_CYCLE_MS) {
          await this.#waker.wait(MIN_LONG_POLL_CYCLE_MS);
        }
      } catch (e) {
        if (this.#stopped) break;
        await this.#waker.wait(this.#afterFailure(e, backoff));
        this.#kicked = true;
      }
    }
  }
}
