// Starts unfinished deploy commands from the journal, oldest first, with at
// most `maxConcurrent` running at once. Kicked when commands are stored and
// when a deployment ends.
import type { Logger } from "../log.ts";
import type { DeploymentRunner } from "./deployment-runner.ts";
import type { Journal } from "./journal.ts";
import { pickCommandsToStart } from "./scheduling.ts";

const FAILED_RUN_COOLDOWN_MS = 5_000;

export class Scheduler {
  readonly #journal: Journal;
  readonly #runner: DeploymentRunner;
  #max: number;
  readonly #log: Logger;
  readonly #active = new Set<number>();
  #filling = false;
  #again = false;
  #stopped = false;

  constructor(deps: { journal: Journal; runner: DeploymentRunner; maxConcurrent: number; log: Logger }) {
    this.#journal = deps.journal;
    this.#runner = deps.runner;
    this.#max = deps.maxConcurrent;
    this.#log = deps.log;
  }

  // docs/agent-lifecycle.md §Config: a lower limit lets running deployments finish; a
  // higher one starts waiting ones at once.
  setMaxConcurrent(max: number): void {
    this.#max = max;
    this.kick();
  }

  get activeCount(): number {
    return this.#active.size;
  }

  kick(): void {
    if (this.#stopped) return;
    this.#again = true;
    if (!this.#filling) void this.#fill();
  }

  stop(): void {
    this.#stopped = true;
    this.#runner.stop();
  }

  async #fill(): Promise<void> {
    this.#filling = true;
    try {
      while (this.#again && !this.#stopped) {
        this.#again = false;
        const unfinished = await this.#journal.unfinishedCommandSeqs();
        for (const seq of pickCommandsToStart(unfinished, this.#active, this.#max)) this.#launch(seq);
      }
    } catch (e) {
      if (!this.#stopped) {
        this.#log.error(`cannot read unfinished commands; retrying in ${FAILED_RUN_COOLDOWN_MS} ms`, e);
        setTimeout(() => this.kick(), FAILED_RUN_COOLDOWN_MS).unref();
      }
    } finally {
      this.#filling = false;
    }
  }

  #launch(seq: number): void {
    this.#active.add(seq);
    this.#runner
      .run(seq)
      .catch(async (e) => {
        if (this.#stopped) return;
        this.#log.error(`command seq ${seq} stopped on an error; retrying in ${FAILED_RUN_COOLDOWN_MS} ms`, e);
        await new Promise((r) => setTimeout(r, FAILED_RUN_COOLDOWN_MS));
      })
      .finally(() => {
        this.#active.delete(seq);
        this.kick();
      });
  }
}
