// Pure rules of the delivery contract, used by the AgentChannel Durable Object and
// tested without any storage (rules.test.ts). applyFinished and deploymentOutcome
// state the projection's rules in plain code: the projection itself runs them as SQL
// (d1/projection.ts), and test/worker/projection-oracle.test.ts holds the two against
// each other.
import { backoffCapMs } from "../schema/backoff.ts";
import { isActiveStep, lateResultReason, SERVER_REASONS, type DeploymentStatus, type StepStatus } from "../schema/steps.ts";

// A step as the projection sees it: its status and the reason recorded with it.
export type StepResult = { status: StepStatus; reason: string | null };

// §Projection: step state only moves forward. A final report ends an active step; the one
// exception is a step the server failed as agent-lost: the agent's real result still
// replaces it (once — the new reason no longer reads "agent-lost"), flagged as late.
// Returns null when the report changes nothing.
export function applyFinished(current: StepResult, report: StepResult): StepResult | null {
  if (isActiveStep(current.status)) return { status: report.status, reason: report.reason };
  if (current.status === "failed" && current.reason === SERVER_REASONS.agentLost) return { status: report.status, reason: lateResultReason(report.reason) };
  return null;
}

// A deployment ends when its last step ends: succeeded only if every step succeeded
// in time — a result that arrived after agent-lost does not make it a success (and a
// terminal deployment never changes again anyway). A deployment whose cancel was asked
// for ends `canceled` whatever its steps' results.
export function deploymentOutcome(steps: readonly (StepStatus | StepResult)[], canceled = false): DeploymentStatus | null {
  const states = steps.map((s) => (typeof s === "string" ? { status: s, reason: null } : s));
  if (states.length === 0) return null;
  if (states.some((s) => isActiveStep(s.status))) return null;
  if (canceled) return "canceled";
  return states.every((s) => s.status === "succeeded" && !s.reason?.startsWith(SERVER_REASONS.agentLost)) ? "succeeded" : "failed";
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
  return backoffCapMs(attempts - 1, 1000, 60_000);
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

