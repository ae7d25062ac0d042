// Chaos-suite configurations: the small one that runs inside `npm test` and the
// full one of `npm run test:chaos`, each overridable from the environment
// (CHAOS_AGENTS=4 …) or the command line (--agents=4 …).
import { CHUNK_START_BYTES } from "../../agent/worker/log-uploader.ts";

const FIRST_CHUNK_KIB = CHUNK_START_BYTES / 1024; // the agent's first log upload chunk

export type ChaosConfig = {
  name: string;
  agents: number; // agents started
  deployments: number; // deployments submitted
  stepsMin: number; // steps per deployment (per agent it targets)
  stepsMax: number;
  multiAgentShare: number; // share of deployments that target two agents
  stepSleepMaxMs: number; // each step sleeps a random 0..this
  faultSeconds: number; // how long faults are injected
  faultsPerMinute: number;
  minPerKind: number; // every fault kind at least this many times
  settleSeconds: number; // bound on the wait for everything to end after the last fault
  submitConcurrency: number;
  replayShare: number; // share of deployments POSTed again with the same Idempotency-Key after success
  offlineAfterMs: number; // OUTPOST_OFFLINE_AFTER_MS given to the server
  agentLostAfterSeconds: number; // of ordinary deployments: never expires in a run
  bigLogShare: number; // share of steps that print bigLogMinKiB..bigLogMaxKiB (more than one upload chunk: the agent starts at 1 MiB)
  bigLogMinKiB: number;
  bigLogMaxKiB: number;
  logRangeKiB: number; // logs are read back in ranges of this size (not a divisor of the 1 MiB first upload chunk)
  timeoutShare: number; // share of deployments with a step that sleeps past a 1–2 s timeoutSeconds
  safeShare: number; // share of steps declared retry: "safe" (the others "never")
  pluginShare: number; // share of steps that are plug-in steps (plan.ts CHAOS_PLUGIN, with a secret input)
  agentLostRuns: number; // agent-lost scenarios: an agent stopped past a deployment's short agentLostAfterSeconds
  agentLostShortSeconds: number; // that deployment's agentLostAfterSeconds
  seed: number;
};

export const SMALL: ChaosConfig = {
  name: "small",
  agents: 3,
  deployments: 22,
  stepsMin: 3,
  stepsMax: 4,
  multiAgentShare: 0.15,
  stepSleepMaxMs: 500,
  faultSeconds: 75,
  faultsPerMinute: 14,
  minPerKind: 1,
  settleSeconds: 120,
  submitConcurrency: 3,
  replayShare: 0.2,
  offlineAfterMs: 5_000,
  agentLostAfterSeconds: 3600,
  bigLogShare: 0.12,
  bigLogMinKiB: 1100,
  bigLogMaxKiB: 1600,
  logRangeKiB: 200,
  timeoutShare: 0.15,
  safeShare: 0.3,
  pluginShare: 0.25,
  agentLostRuns: 1,
  agentLostShortSeconds: 2,
  seed: 0,
};

export const FULL: ChaosConfig = {
  ...SMALL,
  name: "full",
  agents: 4,
  deployments: 130,
  stepsMin: 3,
  stepsMax: 5,
  multiAgentShare: 0.15,
  faultSeconds: 300,
  faultsPerMinute: 12,
  minPerKind: 3,
  settleSeconds: 180,
  submitConcurrency: 4,
  bigLogShare: 0.08,
  timeoutShare: 0.1,
  agentLostRuns: 2,
};

const KEYS: Record<string, keyof ChaosConfig> = {
  agents: "agents",
  deployments: "deployments",
  "steps-min": "stepsMin",
  "steps-max": "stepsMax",
  steps: "stepsMax",
  "multi-agent-share": "multiAgentShare",
  "step-sleep-max-ms": "stepSleepMaxMs",
  duration: "faultSeconds",
  "fault-seconds": "faultSeconds",
  "fault-rate": "faultsPerMinute",
  "faults-per-minute": "faultsPerMinute",
  "min-per-kind": "minPerKind",
  "settle-seconds": "settleSeconds",
  "submit-concurrency": "submitConcurrency",
  "replay-share": "replayShare",
  "offline-after-ms": "offlineAfterMs",
  "agent-lost-after-seconds": "agentLostAfterSeconds",
  "big-log-share": "bigLogShare",
  "big-log-min-kib": "bigLogMinKiB",
  "big-log-max-kib": "bigLogMaxKiB",
  "log-range-kib": "logRangeKiB",
  "timeout-share": "timeoutShare",
  "safe-share": "safeShare",
  "plugin-share": "pluginShare",
  "agent-lost-runs": "agentLostRuns",
  "agent-lost-short-seconds": "agentLostShortSeconds",
  seed: "seed",
};

export const USAGE = `npm run test:chaos [-- --config=small|full] [--agents=N] [--deployments=N] [--steps-min=N] [--steps-max=N]
  [--duration=S (fault phase)] [--fault-rate=N (per minute)] [--min-per-kind=N] [--settle-seconds=S] [--seed=N]
  [--big-log-share=F] [--timeout-share=F] [--safe-share=F] [--agent-lost-runs=N] [--agent-lost-short-seconds=S] ...
Environment: CHAOS_CONFIG, CHAOS_AGENTS, CHAOS_DEPLOYMENTS, CHAOS_STEPS_MIN, CHAOS_STEPS_MAX, CHAOS_DURATION,
  CHAOS_FAULT_RATE, CHAOS_MIN_PER_KIND, CHAOS_SETTLE_SECONDS, CHAOS_SEED, … (the same names, upper case, CHAOS_ prefix).`;

// Environment first, then arguments; `--steps=N` sets both bounds.
export function resolveConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): ChaosConfig {
  const pairs: [string, string][] = [];
  for (const [k, v] of Object.entries(env)) {
    if (k.startsWith("CHAOS_") && v !== undefined) pairs.push([k.slice(6).toLowerCase().replaceAll("_", "-"), v]);
  }
  for (const a of argv) {
    const m = /^--([a-z-]+)=(.*)$/.exec(a);
    if (!m) throw new Error(`bad argument ${a}\n${USAGE}`);
    pairs.push([m[1], m[2]]);
  }
  const preset = pairs.filter(([k]) => k === "config").at(-1)?.[1] ?? "full";
  if (preset !== "small" && preset !== "full") throw new Error(`unknown configuration ${preset} (small | full)`);
  const cfg: ChaosConfig = { ...(preset === "small" ? SMALL : FULL) };
  for (const [k, v] of pairs) {
    if (k === "config") continue;
    const key = KEYS[k];
    if (!key) throw new Error(`unknown setting ${k}\n${USAGE}`);
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`${k} must be a non-negative number, not ${v}`);
    (cfg as Record<string, unknown>)[key] = n;
    if (k === "steps") cfg.stepsMin = n;
  }
  if (cfg.stepsMin < 1 || cfg.stepsMax < cfg.stepsMin) throw new Error("steps: need 1 ≤ steps-min ≤ steps-max");
  if (cfg.agents < 1 || cfg.deployments < 1) throw new Error("agents and deployments must be ≥ 1");
  if (cfg.bigLogMinKiB <= FIRST_CHUNK_KIB || cfg.bigLogMaxKiB < cfg.bigLogMinKiB || cfg.bigLogMaxKiB > 64 * 1024) {
    throw new Error(`big logs: need ${FIRST_CHUNK_KIB} < big-log-min-kib ≤ big-log-max-kib ≤ 65536 (more than one upload chunk; a chaos run's logs stay small)`);
  }
  if (cfg.logRangeKiB < 1 || cfg.logRangeKiB > 1024) throw new Error("log-range-kib: 1..1024");
  if (cfg.agentLostShortSeconds < 1) throw new Error("agent-lost-short-seconds must be ≥ 1 (the API's minimum)");
  if (!cfg.seed) cfg.seed = Math.floor(Math.random() * 2 ** 31);
  return cfg;
}

// A run can be repeated with its seed.
export { seededRandom as rngFrom } from "../support/prng.ts";
