// Pure rules of the delivery contract, shared by the Worker and the AgentChannel
// Durable Object and tested without any storage.
import type { DeploymentStatus, StepStatus } from "../schema/api.ts";

// One command per (deployment, agent): its id is derived, so a repeated dispatch
// finds the command already stored, and a report names its command without a lookup table.
export function commandIdFor(deploymentId: string, agentId: string): string {
  return `${deploymentId}:${agentId}`;
}

export const TERMINAL_STEP_STATUSES = ["succeeded", "failed", "interrupted", "skipped", "canceled"] as const satisfies readonly StepStatus[];
export const ACTIVE_STEP_STATUSES = ["pending", "running"] as const satisfies readonly StepStatus[];

// A deployment ends when its last step ends: succeeded only if every step succeeded.
// The projection's SQL (durable-objects/projection.ts) encodes the same rule in one statement.
export function deploymentOutcome(steps: readonly StepStatus[]): DeploymentStatus | null {
  if (steps.length === 0) return null;
  if (steps.some((s) => (ACTIVE_STEP_STATUSES as readonly string[]).includes(s))) return null;
  return steps.every((s) => s === "succeeded") ? "succeeded" : "failed";
}

// Retry delay of a failed projection to D1: 1 s, 2 s, 4 s … capped at one minute.
export function projectionBackoffMs(attempts: number): number {
  return Math.min(60_000, 1000 * 2 ** Math.max(0, Math.min(attempts - 1, 16)));
}

export type SocketSeen = { lastSeenAt: number };

// Presence sweep: a socket unheard-of for longer than offlineAfterMs is dead even if
// the runtime never told us (webSocketClose is not guaranteed).
export function splitByLiveness<T extends SocketSeen>(sockets: readonly T[], now: number, offlineAfterMs: number) {
  const alive: T[] = [];
  const dead: T[] = [];
  for (const s of sockets) (now - s.lastSeenAt > offlineAfterMs ? dead : alive).push(s);
  const lastSeenAt = alive.reduce<number | null>((m, s) => (m === null || s.lastSeenAt > m ? s.lastSeenAt : m), null);
  return { alive, dead, lastSeenAt };
}

export function parseOfflineAfterMs(raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw.trim() === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1000) {
    console.error(`OUTPOST_OFFLINE_AFTER_MS=${JSON.stringify(raw)} is not an integer ≥ 1000; using ${fallback}`);
    return fallback;
  }
  return n;
}
