// What the monitor and the worker say to each other about an upgrade
// (docs/agent-lifecycle.md §Upgrade), kept apart so that the monitor loads only this.
export const UPGRADE_TO_ENV = "OUTPOST_UPGRADE_TO"; // set on the worker on trial: the version it is
export const ROLLED_BACK_ENV = "OUTPOST_UPGRADE_ROLLED_BACK"; // set on the worker after a rollback: JSON {version, reason}
export const UPGRADE_HEALTH_ENV = "OUTPOST_UPGRADE_HEALTH_MS"; // how long a trial worker has to be healthy (default 60 s)
export const DEFAULT_UPGRADE_HEALTH_MS = 60_000;

// worker → monitor: switch to the version unpacked in `dir` (its worker entry is `worker`).
export type SwitchRequest = { type: "upgrade"; version: string; dir: string; worker: string };
// worker on trial → monitor: connected, resynced, heartbeat answered.
export const HEALTHY_MESSAGE = { type: "healthy" } as const;

export function isSwitchRequest(m: unknown): m is SwitchRequest {
  const o = m as Partial<SwitchRequest> | null;
  return !!o && o.type === "upgrade" && typeof o.version === "string" && typeof o.dir === "string" && typeof o.worker === "string";
}
export const isHealthyMessage = (m: unknown): boolean => (m as { type?: unknown } | null)?.type === "healthy";
