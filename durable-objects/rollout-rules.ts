// Rolling deployments as plain rules (docs/api.md §Rollout): how targets split into
// waves, and what a deployment's coordinator does next given what D1 shows. The
// DeploymentCoordinator Durable Object is a thin shell over these.
import type { RolloutState } from "../d1/rollout.ts";
import type { Rollout } from "../schema/api.ts";

// Agents per wave: a count, or a percentage of the targets rounded up (at least 1).
export function waveSize(targets: number, rollout: Rollout | null | undefined): number {
  if (!rollout) return Math.max(1, targets);
  const { batchSize } = rollout;
  if (typeof batchSize === "number") return batchSize;
  const percent = Number(batchSize.slice(0, -1));
  return Math.max(1, Math.ceil((targets * percent) / 100));
}

// The 1-based wave of each target, in the order the targets were given (or resolved).
export function assignWaves(targets: number, rollout: Rollout | null | undefined): { waves: number; waveOf: (index: number) => number } {
  const size = waveSize(targets, rollout);
  return { waves: Math.max(1, Math.ceil(targets / size)), waveOf: (i) => Math.floor(i / size) + 1 };
}

export type RolloutAction =
  | { kind: "wait" } // the current wave is still running (or there is nothing to do)
  | { kind: "advance"; to: number } // the current wave ended: start the next
  | { kind: "stop"; after: number }; // it failed with stopOnFailure: later waves are skipped

export function nextRolloutAction(s: RolloutState): RolloutAction {
  if (!s.open || s.canceled || s.activeInWave > 0 || s.currentWave >= s.waves) return { kind: "wait" };
  if (s.failedInWave > 0 && s.stopOnFailure) return { kind: "stop", after: s.currentWave };
  return { kind: "advance", to: s.currentWave + 1 };
}

export const skippedReason = (wave: number): string => `not run: wave ${wave} failed and the rollout stops on failure`;

// Upgrades of many agents (docs/agent-lifecycle.md §Upgrading many agents): what the
// current wave's upgrade states say. A failed or rolled-back upgrade stops the rollout;
// the next wave starts when every agent of this one succeeded.
export type UpgradeWaveAction = { kind: "wait" } | { kind: "stop"; reason: string } | { kind: "next" } | { kind: "done" };

export function upgradeWaveAction(states: readonly (string | null)[], wave: number, waves: number): UpgradeWaveAction {
  const bad = states.filter((s) => s === "failed" || s === "rolled-back").length;
  if (bad > 0) return { kind: "stop", reason: `${bad} upgrade(s) of wave ${wave} failed or rolled back; later waves not started` };
  if (states.some((s) => s !== "succeeded")) return { kind: "wait" };
  return wave >= waves ? { kind: "done" } : { kind: "next" };
}
