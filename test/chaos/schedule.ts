// The random fault schedule: every kind at least `minPerKind` times, more
// picked at random up to the configured rate, at random times in the fault phase.
import type { ChaosConfig } from "./config.ts";

export const FAULT_KINDS = [
  "proxy-cut-all", // every agent connection reset
  "proxy-cut-share", // a random share of them reset
  "proxy-stall", // nothing forwarded either way for a while, sockets kept open
  "proxy-half-open", // one direction silently dropped on some connections, until cut
  "proxy-blackhole", // new connections refused for a while
  "proxy-ws-block", // WebSocket upgrades reset for a while: long-poll fallback
  "api-cut", // the management API client's connections reset (retried POSTs with Idempotency-Key)
  "worker-kill", // kill -9 of an agent's worker (its monitor restarts it)
  "worker-kill-at-step-start", // kill -9 of a worker 0–10 ms after a step's directory appears: around "journal says started" and the spawn
  "monitor-kill", // kill -9 of an agent's monitor and worker, `outpost-agent run` again after a pause
  "server-kill", // kill -9 of the server's process group, restarted on the same port and state
  "do-evict", // the agent's Durable Object evicted (test hook)
  "agent-restart", // POST /api/v1/agents/:id/restart: a restart command; the worker hands over to a new one
  "agent-upgrade", // POST /api/v1/agents/:id/upgrade to the other of two packaged versions: switch, health check (or rollback)
] as const;
export type FaultKindName = (typeof FAULT_KINDS)[number];

export type ScheduledFault = {
  at: number; // ms after the start of the fault phase
  kind: FaultKindName;
  agent: number; // index of the agent it targets, when it targets one
  ms: number; // how long it lasts (stall, half-open, blackhole, ws-block, monitor/server down time)
  share: number; // share of connections it hits (cut-share, half-open)
};

const between = (r: () => number, lo: number, hi: number) => lo + r() * (hi - lo);

export function buildSchedule(cfg: ChaosConfig, random: () => number): ScheduledFault[] {
  // a kill at a step's start lands in its narrow window only sometimes: twice as many
  const min = (k: FaultKindName) => (k === "worker-kill-at-step-start" ? 2 : 1) * cfg.minPerKind;
  const kinds: FaultKindName[] = [];
  for (const k of FAULT_KINDS) for (let i = 0; i < min(k); i++) kinds.push(k);
  const total = Math.max(kinds.length, Math.round((cfg.faultsPerMinute * cfg.faultSeconds) / 60));
  while (kinds.length < total) kinds.push(FAULT_KINDS[Math.floor(random() * FAULT_KINDS.length)]);
  // shuffle, then random sorted times: kinds land anywhere in the phase
  for (let i = kinds.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [kinds[i], kinds[j]] = [kinds[j], kinds[i]];
  }
  const span = cfg.faultSeconds * 1000;
  const times = kinds.map(() => between(random, 1_000, Math.max(2_000, span - 2_000))).sort((a, b) => a - b);
  const faults = kinds.map((kind, i) => ({
    at: Math.round(times[i]),
    kind,
    agent: Math.floor(random() * cfg.agents),
    ms: Math.round(durationOf(kind, random)),
    share: between(random, 0.3, 0.9),
  }));
  // The phase ends on a hard fault with work in flight, so the settle time measures a real recovery.
  faults.push({ at: Math.max(0, span - 1_500), kind: "server-kill", agent: 0, ms: 1_000, share: 1 });
  return faults;
}

function durationOf(kind: FaultKindName, r: () => number): number {
  switch (kind) {
    case "proxy-stall":
      return between(r, 1_000, 8_000);
    case "proxy-half-open":
      return between(r, 3_000, 20_000);
    case "proxy-blackhole":
      return between(r, 2_000, 10_000);
    case "proxy-ws-block":
      return between(r, 10_000, 40_000);
    case "monitor-kill":
      return between(r, 1_000, 8_000);
    case "server-kill":
      return between(r, 0, 3_000);
    default:
      return 0;
  }
}
