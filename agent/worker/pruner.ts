// Retention: deployments that ended on this agent more than `retentionDays` ago
// and are fully delivered (agent/worker/journal-prune.ts says exactly when) leave
// the journal, steps/ and their work folder, so a long-lived agent does not grow
// without bound. Runs
// at start and then periodically. Step folders go first, journal rows after: a
// crash in between leaves rows the next run finds again, never folders no row
// points at. meta.lastSeq stays, so a command pulled again is still never run.
import { rmSync } from "node:fs";
import type { Logger } from "../log.ts";
import { stepPaths } from "../steps/shell-step.ts";
import type { Journal } from "./journal.ts";
import { deploymentWorkDir } from "./step-launch.ts";

export const RETENTION_DAYS_DEFAULT = 7;
const DAY_MS = 86_400_000;
const MAX_PRUNE_EVERY_MS = 3_600_000;
const MIN_PRUNE_EVERY_MS = 1_000;
const BATCH = 200;

// Hourly, or more often when the retention is shorter than two hours (tests use seconds).
export function pruneIntervalMs(retentionMs: number): number {
  return Math.min(MAX_PRUNE_EVERY_MS, Math.max(MIN_PRUNE_EVERY_MS, retentionMs / 2));
}

export type PrunerDeps = { journal: Journal; stepsDir: string; workDir: string; retentionDays: number; log: Logger };

export class Pruner {
  readonly #deps: PrunerDeps;
  readonly #retentionMs: number;
  #timer: NodeJS.Timeout | null = null;
  #running = false;
  #stopped = false;

  constructor(deps: PrunerDeps) {
    this.#deps = deps;
    this.#retentionMs = deps.retentionDays * DAY_MS;
  }

  start(): void {
    this.#tick();
    this.#timer = setInterval(() => this.#tick(), pruneIntervalMs(this.#retentionMs));
    this.#timer.unref();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  #tick(): void {
    if (this.#running) return;
    this.#running = true;
    this.pruneOnce()
      .catch((e) => {
        if (!this.#stopped) this.#deps.log.error("pruning ended deployments failed; trying again at the next period", e);
      })
      .finally(() => (this.#running = false));
  }

  // Returns how many commands were pruned.
  async pruneOnce(now = Date.now()): Promise<number> {
    const { journal, stepsDir, log } = this.#deps;
    const cutoff = now - this.#retentionMs;
    let total = 0;
    let folders = 0;
    for (;;) {
      const candidates = await journal.prunableCommands(cutoff, BATCH);
      const cleared: number[] = [];
      for (const c of candidates) {
        try {
          for (const stepId of c.stepIds) rmSync(stepPaths(stepsDir, stepId).dir, { recursive: true, force: true });
          if (c.deploymentId !== null) rmSync(deploymentWorkDir(this.#deps.workDir, c.deploymentId), { recursive: true, force: true });
          cleared.push(c.seq);
          folders += c.stepIds.length;
        } catch (e) {
          log.error(`cannot remove the step folders of command seq ${c.seq}; it stays in the journal until they can be`, e);
        }
      }
      const pruned = await journal.pruneCommands(cleared, cutoff);
      total += pruned.length;
      if (candidates.length < BATCH || pruned.length < candidates.length) break; // the rest waits for the next period
    }
    if (total > 0) log.info(`pruned ${total} command(s) (${folders} step folder(s)) that ended more than ${this.#deps.retentionDays} day(s) ago and were fully delivered`);
    return total;
  }
}
