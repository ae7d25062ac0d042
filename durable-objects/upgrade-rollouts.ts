// Carries upgrade rollouts forward (docs/agent-lifecycle.md §Upgrading many agents):
// starts a wave — each agent's upgrade recorded `pending` and its upgrade command
// stored in its channel — and, whenever an agent of the current wave reports an end
// state (its channel calls progressUpgradeRollouts) or the cron looks, moves on or stops.
import { setUpgrade } from "../d1/agent-config.ts";
import { moveUpgradeRollout, runningUpgradeRollouts, upgradeStatesOf, type UpgradeRollout } from "../d1/upgrade-rollouts.ts";
import { channelOf } from "./channels.ts";
import { upgradeWaveAction } from "./rollout-rules.ts";

export const upgradeCommandId = (rolloutId: string, agentId: string) => `upgrade:${rolloutId}:${agentId}`;

export const startUpgradeWave = (env: Cloudflare.Env, r: UpgradeRollout, wave: number): Promise<void> => startUpgrades(env, r, r.waves[wave - 1] ?? []);

// Idempotent: a command id names the (rollout, agent); storing it again changes nothing.
async function startUpgrades(env: Cloudflare.Env, r: UpgradeRollout, agentIds: string[]): Promise<void> {
  const now = Date.now();
  await Promise.all(
    agentIds.map(async (agentId) => {
      await setUpgrade(env.DB, agentId, { version: r.version, state: "pending", reason: null }, now);
      await channelOf(env, agentId).enqueue(agentId, { type: "upgrade", id: upgradeCommandId(r.id, agentId), version: r.version, sha256: r.sha256 });
    }),
  );
}

export async function progressUpgradeRollouts(env: Cloudflare.Env, agentId?: string): Promise<void> {
  for (const r of await runningUpgradeRollouts(env.DB, agentId)) {
    const wave = r.currentWave;
    const agents = r.waves[wave - 1] ?? [];
    const states = await upgradeStatesOf(env.DB, agents, r.version);
    // An agent of the wave that shows no upgrade to this version was never handed its
    // command (a pass that stopped half-way): hand it now.
    const missing = agents.filter((_, i) => states[i] === null);
    if (missing.length > 0) await startUpgrades(env, r, missing);
    const action = upgradeWaveAction(states, wave, r.waves.length);
    const now = Date.now();
    if (action.kind === "stop") await moveUpgradeRollout(env.DB, r.id, wave, { currentWave: wave, state: "stopped", reason: action.reason }, now);
    if (action.kind === "done") await moveUpgradeRollout(env.DB, r.id, wave, { currentWave: wave, state: "succeeded", reason: null }, now);
    if (action.kind === "next" && (await moveUpgradeRollout(env.DB, r.id, wave, { currentWave: wave + 1, state: "running", reason: null }, now))) {
      await startUpgradeWave(env, r, wave + 1);
    }
  }
}
