// Pure rules of the delivery contract, shared by the Worker and the AgentChannel
// Durable Object and tested without any storage (rules.test.ts).
import type { DeploymentStatus, StepStatus } from "../schema/api.ts";

// One command per (deployment, agent): its id is derived, so a repeated dispatch
// finds the command already stored, and a report names its command without a lookup table.
export function commandIdFor(deploymentId: string, agentId: string): string {
  return `${deploymentId}:${agentId}`;
}

export const TERMINAL_STEP_STATUSES = ["succeeded", "failed", "interrupted", "skipped", "canceled"] as const satisfies readonly StepStatus[];
export const ACTIVE_STEP_STATUSES = ["pending", "running"] as const satisfies readonly StepStatus[];

// docs/protocol.md §Agent lost / §Revoke: the reasons the server records when it ends a step itself.
export const AGENT_LOST_REASON = "agent-lost";
export const LATE_RESULT_REASON = "agent-lost; result arrived later";
export const REVOKED_REASON = "agent revoked";

const isActive = (s: StepStatus) => (ACTIVE_STEP_STATUSES as readonly string[]).includes(s);

export type StepState = { status: StepStatus; reason: string | null };

// §Projection: step state only moves forward. A final report ends an active step; the one
// exception is a step the server failed as agent-lost: the agent's real result still
// replaces it (once — the new reason no longer reads "agent-lost"), flagged as late.
// Returns null when the report changes nothing. projection.ts encodes the same rule in SQL.
export function applyFinished(current: StepState, report: { status: StepStatus; reason: string | null }): StepState | null {
  if (isActive(current.status)) return { status: report.status, reason: report.reason };
  if (current.status === "failed" && current.reason === AGENT_LOST_REASON) return { status: report.status, reason: lateResultReason(report.reason) };
  return null;
}

export function lateResultReason(agentReason: string | null): string {
  return agentReason ? `${LATE_RESULT_REASON}: ${agentReason}`.slice(0, 600) : LATE_RESULT_REASON;
}

// A deployment ends when its last step ends: succeeded only if every step succeeded
// in time — a result that arrived after agent-lost does not make it a success (and a
// terminal deployment never changes again anyway).
// The projection's SQL (durable-objects/projection.ts) encodes the same rule in one statement.
export function deploymentOutcome(steps: readonly (StepStatus | StepState)[]): DeploymentStatus | null {
  const states = steps.map((s) => (typeof s === "string" ? { status: s, reason: null } : s));
  if (states.length === 0) return null;
  if (states.some((s) => isActive(s.status))) return null;
  return states.every((s) => s.status === "succeeded" && !s.reason?.startsWith(AGENT_LOST_REASON)) ? "succeeded" : "failed";
}

// §Agent lost: while the agent is offline, an unfinished command is given up on at
// max(offlineSince, createdAt) + agentLostAfterSeconds. offlineSince is null when the
// agent has never been seen (then the clock starts when the command was created).
export function agentLostDeadline(offlineSince: number | null, createdAt: number, agentLostAfterSeconds: number): number {
  return Math.max(offlineSince ?? 0, createdAt) + agentLostAfterSeconds * 1000;
}

// docs/protocol.md §Reports, "Times": a report's `at` is the agent's clock. Shifted by
// the batch's offset (server receive time − the agent's sentAt) a constant skew cancels
// out; never later than the moment the server heard of it. (The projection also keeps
// it from preceding the deployment's creation, which only D1 knows.)
export function placeOnServerClock(agentAt: number, offsetMs: number, receivedAt: number): number {
  return Math.max(0, Math.min(receivedAt, agentAt + offsetMs));
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

// §Idempotent requests: a stable text for a parsed body (object keys sorted), hashed to
// tell "the same request again" from "another request under a reused key".
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}
