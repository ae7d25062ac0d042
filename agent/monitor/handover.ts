// The monitor hands over to the monitor of the version it upgraded to
// (docs/agent-lifecycle.md §Upgrade, "The monitor's own upgrade"). Node cannot exec a new
// program in its own process, and a service manager (systemd) watches the monitor's
// pid, so the hand-over happens in the same process: the running monitor imports the new
// version's monitor module (PACKAGE_MONITOR in its unpacked package), lets go of its
// signal handlers and its worker, and calls that module's runMonitor with the running
// worker to adopt. No process stops, the pid stays, no step notices.
//
// The same module is what `outpost-agent run` of any version starts when
// <home>/agent-version.json names an upgraded version: after a restart of the machine
// the agent runs its upgraded monitor, not the one it was installed with.
//
// What one monitor passes to another is a contract between versions: a newer monitor
// must accept every contract an older one may pass (MONITOR_HANDOVER_CONTRACTS).
import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { pathToFileURL } from "node:url";
import type * as AgentPackage from "../../schema/agent-package.ts";

// Where a package keeps its worker and its monitor (schema/agent-package.ts; the type
// makes the compiler check they are the same). Not imported: that module is the package
// reader (zod schemas, tar, gzip), which the long-lived monitor has no use for.
const PACKAGE_WORKER: typeof AgentPackage.PACKAGE_WORKER = "lib/worker.mjs";
const PACKAGE_MONITOR: typeof AgentPackage.PACKAGE_MONITOR = "lib/monitor.mjs";

export const MONITOR_HANDOVER_CONTRACT = 1;
// The contracts this monitor accepts from the monitor handing over to it.
export const MONITOR_HANDOVER_CONTRACTS: readonly number[] = [1];

// Contract 1. `worker`: the running worker (forked with an IPC channel), or null when
// there is none to adopt (the new monitor starts one).
export type MonitorHandover = {
  contract: number;
  from: string; // the version of the monitor handing over
  worker: ChildProcess | null;
  workerStartedAt: number; // epoch ms, for the restart back-off
};

// Options every version's runMonitor takes (contract 1). `delegated`: this monitor was
// started by another one (at start or by a hand-over) and starts no other.
export type MonitorOptions = { home: string; concurrency: number | null; retentionDays: number | null; stepUmask: number; delegated?: boolean };
export type RunMonitor = (opts: MonitorOptions, handover?: MonitorHandover) => Promise<number>;

export class MonitorHandoverError extends Error {
  readonly context: { module: string };
  constructor(message: string, module: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "MonitorHandoverError";
    this.context = { module };
  }
}

// The monitor module of the unpacked package whose worker is `worker`, when that package
// has one (packages built before the hand-over existed have none).
export function monitorModuleOf(worker: string): string | null {
  if (!worker.endsWith(`/${PACKAGE_WORKER}`)) return null; // run from source
  const module = worker.slice(0, -PACKAGE_WORKER.length) + PACKAGE_MONITOR;
  return existsSync(module) ? module : null;
}

export async function loadMonitor(module: string): Promise<RunMonitor> {
  let exports: { runMonitor?: unknown; MONITOR_HANDOVER_CONTRACTS?: unknown };
  try {
    exports = (await import(pathToFileURL(module).href)) as typeof exports;
  } catch (e) {
    throw new MonitorHandoverError(`cannot load the monitor ${module}: ${(e as Error).message}`, module, { cause: e });
  }
  if (typeof exports.runMonitor !== "function") throw new MonitorHandoverError(`${module} exports no runMonitor`, module);
  const accepted = exports.MONITOR_HANDOVER_CONTRACTS;
  if (!Array.isArray(accepted) || !accepted.includes(MONITOR_HANDOVER_CONTRACT)) {
    throw new MonitorHandoverError(`the monitor ${module} does not accept hand-over contract ${MONITOR_HANDOVER_CONTRACT}`, module);
  }
  return exports.runMonitor as RunMonitor;
}
