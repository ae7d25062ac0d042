// Which worker the monitor runs, and the switch to an upgraded version
// (docs/agent-lifecycle.md §Upgrade). A worker that unpacked a verified version asks
// for the switch and stops (EXIT_UPGRADE); the monitor then starts the new version's
// worker "on trial". It is healthy when it says so (connected, resynced, heartbeat
// answered) within the deadline: from then on it is the worker this monitor — and the
// next one, through <home>/agent-version.json — runs. If it exits first, or misses the
// deadline, the monitor goes back to the version it ran before and tells that worker
// why. Running steps are detached processes: whichever worker comes next re-attaches.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { EXIT_RESTART, EXIT_UPGRADE } from "../errors.ts";
import type { Logger } from "../log.ts";
import { writeFileAtomic } from "../settings.ts";
import { DEFAULT_UPGRADE_HEALTH_MS, isHealthyMessage, isSwitchRequest, ROLLED_BACK_ENV, UPGRADE_HEALTH_ENV, UPGRADE_TO_ENV, type SwitchRequest } from "../upgrade-protocol.ts";

type Running = { version: string | null; worker: string };
type Trial = SwitchRequest & { timer: NodeJS.Timeout };

export class WorkerVersions {
  readonly #file: string;
  readonly #log: Logger;
  readonly #healthMs: number;
  #current: Running;
  #requested: SwitchRequest | null = null;
  #trial: Trial | null = null;
  #missedDeadline = false;
  #stopWorker: () => void = () => {};

  constructor(home: string, sourceWorker: string, log: Logger, env: NodeJS.ProcessEnv = process.env) {
    this.#file = join(home, "agent-version.json");
    this.#log = log;
    const ms = Number(env[UPGRADE_HEALTH_ENV]);
    this.#healthMs = Number.isInteger(ms) && ms > 0 ? ms : DEFAULT_UPGRADE_HEALTH_MS;
    this.#current = this.#read() ?? { version: null, worker: sourceWorker };
  }

  // The version this monitor runs when no switch is under way.
  get current(): Readonly<Running> {
    return this.#current;
  }

  entry(): string {
    return this.#trial?.worker ?? this.#current.worker;
  }

  // For the deadline: how to stop the worker now running.
  started(stop: () => void): void {
    this.#stopWorker = stop;
  }

  // True when the message made the version on trial the current one.
  message(m: unknown): boolean {
    if (isSwitchRequest(m)) {
      this.#requested = m;
      return false;
    }
    if (isHealthyMessage(m) && this.#trial) {
      const t = this.#trial;
      clearTimeout(t.timer);
      this.#trial = null;
      this.#current = { version: t.version, worker: t.worker };
      writeFileAtomic(this.#file, JSON.stringify(this.#current) + "\n");
      this.#log.info(`upgrade to ${t.version} succeeded: its worker is healthy`);
      return true;
    }
    return false;
  }

  // The worker exited: the environment of the next one when a switch starts or ends,
  // null for an ordinary exit (the monitor's own restart rules apply).
  exited(code: number | null, signal: string | null): { env: NodeJS.ProcessEnv } | null {
    if (this.#trial && code === EXIT_RESTART && !this.#missedDeadline) {
      // The server asked for a restart while the new version was on trial: restart the
      // same version, still on trial, with the deadline it had (a restart is no verdict).
      this.#log.info(`the worker of version ${this.#trial.version} restarts on the server's request; still on trial`);
      return { env: { [UPGRADE_TO_ENV]: this.#trial.version } };
    }
    if (this.#trial) {
      const t = this.#trial;
      clearTimeout(t.timer);
      this.#trial = null;
      const reason = this.#missedDeadline ? `not healthy within ${this.#healthMs / 1000} s` : `the new worker exited (${signal ?? `code ${code}`}) before it was healthy`;
      this.#missedDeadline = false;
      this.#log.error(`upgrade to ${t.version} rolled back to ${this.#current.version ?? "the version started from the command line"}: ${reason}`);
      return { env: { [ROLLED_BACK_ENV]: JSON.stringify({ version: t.version, reason }) } };
    }
    if (code === EXIT_UPGRADE && this.#requested) {
      const r = this.#requested;
      this.#requested = null;
      const timer = setTimeout(() => {
        this.#missedDeadline = true;
        this.#log.warn(`version ${r.version} is not healthy within ${this.#healthMs / 1000} s; stopping it`);
        this.#stopWorker();
      }, this.#healthMs);
      this.#trial = { ...r, timer };
      this.#log.info(`switching to version ${r.version} (${r.worker}); it has ${this.#healthMs / 1000} s to be healthy`);
      return { env: { [UPGRADE_TO_ENV]: r.version } };
    }
    return null;
  }

  #read(): Running | null {
    try {
      const v = JSON.parse(readFileSync(this.#file, "utf8")) as Partial<Running>;
      if (typeof v.worker !== "string" || !existsSync(v.worker)) {
        this.#log.warn(`${this.#file} names no usable worker; running the version started from the command line`);
        return null;
      }
      return { version: typeof v.version === "string" ? v.version : null, worker: v.worker };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") this.#log.warn(`cannot read ${this.#file}: ${(e as Error).message}; running the version started from the command line`);
      return null;
    }
  }
}
