// Size limits shared by both ends: the server rejects more, the agent never sends more.
export const LIMITS = {
  jsonBodyBytes: 256 * 1024,
  // Step logs (docs/protocol.md §Logs): one upload carries at most logChunkBytes (the
  // Worker holds a chunk in memory: 128 MB per isolate); a step keeps at most
  // logBytesPerStep of output, on the server (R2) and on the agent's disk alike.
  logChunkBytes: 8 * 1024 * 1024,
  logBytesPerStep: 1024 * 1024 * 1024,
  stepsPerDeployment: 100,
  // Targets of one deployment, by name or by tags; and its step rows (targets × steps).
  agentsPerDeployment: 10_000,
  stepRowsPerDeployment: 100_000,
  commandBytes: 64 * 1024,
  reportsPerBatch: 100,
  commandsPerPull: 100,
  longPollSeconds: 25,
  wsMessageBytes: 64 * 1024,
  // A step's outputs (OUTPOST_OUTPUTS): all values together, and each key.
  outputsBytesPerStep: 16 * 1024,
  outputKeyBytes: 64,
  outputsPerStep: 100,
} as const;

// Presence and reconnect defaults (docs/protocol.md §Presence, §Reconnect); each can be overridden.
export const TIMING = {
  heartbeatMs: 10_000,
  offlineAfterMs: 30_000,
  reconnectMinMs: 500,
  reconnectMaxMs: 30_000,
} as const;

// The ping interval a server asks for: a third of its offline threshold, so that two
// lost pings are forgiven, within [1 s, heartbeatMs].
export function heartbeatFor(offlineAfterMs: number): number {
  return Math.max(1000, Math.min(TIMING.heartbeatMs, Math.round(offlineAfterMs / 3)));
}

export const HEARTBEAT_PING = "ping";
export const HEARTBEAT_PONG = "pong";
