// One Durable Object per deployment that has more than one wave, more targets than the
// POST dispatches itself, or was canceled: it carries the deployment forward after the
// POST has answered (docs/api.md §Rollout, §Cancel; docs/protocol.md §Dispatch). D1 holds the state; this object serializes the passes over it and keeps an
// alarm while the deployment is open, so a lost poke only delays it. A pass: send the
// cancel to agents holding its commands, or dispatch the current wave's targets;
// then, once the current wave has ended, move to the next wave or stop the rollout.
// Pokes come from the POST, the cancel, the agents' channels when an agent's part of
// the deployment ends, and the cron.
import { DurableObject } from "cloudflare:workers";
import { undispatchedTargets } from "../d1/dispatch-targets.ts";
import { advanceWave, rolloutState, skipLaterWaves, targetsToTellOfCancel } from "../d1/rollout.ts";
import { dispatchAll, sendCancel } from "./dispatch.ts";
import { nextRolloutAction, skippedReason } from "./rollout-rules.ts";

const KEY_DEPLOYMENT = "deploymentId";
// While a later wave waits, the alarm looks again this often (pokes are faster).
const SAFETY_PASS_MS = 30_000;
const RETRY_PASS_MS = 5_000;
const MAX_STEPS_PER_PASS = 50;
const DISPATCH_PAGE = 200; // targets read from D1 at once

export class DeploymentCoordinator extends DurableObject<Cloudflare.Env> {
  #running: Promise<void> | null = null;
  #again = false;

  async poke(deploymentId: string): Promise<void> {
    const known = await this.ctx.storage.get<string>(KEY_DEPLOYMENT);
    if (known === undefined) await this.ctx.storage.put(KEY_DEPLOYMENT, deploymentId);
    else if (known !== deploymentId) throw new Error(`coordinator of deployment ${known} poked for ${deploymentId}`);
    await this.#run();
  }

  async alarm(): Promise<void> {
    if ((await this.ctx.storage.get<string>(KEY_DEPLOYMENT)) !== undefined) await this.#run();
  }

  // One pass at a time; a poke during a pass asks for one more.
  #run(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      try {
        do {
          this.#again = false;
          await this.#pass();
        } while (this.#again);
      } finally {
        this.#running = null;
      }
    })();
    return this.#running;
  }

  async #pass(): Promise<void> {
    const id = (await this.ctx.storage.get<string>(KEY_DEPLOYMENT))!;
    const db = this.env.DB;
    // A pass cut short (the object evicted mid-dispatch) is taken up again by this alarm;
    // a pass that ends sets the alarm it needs.
    await this.ctx.storage.setAlarm(Date.now() + RETRY_PASS_MS);
    let retrySoon = false;
    let watch = false; // a later wave waits for this one to end
    for (let i = 0; i < MAX_STEPS_PER_PASS; i++) {
      const state = await rolloutState(db, id);
      if (!state) break;
      // A canceled deployment may have ended in D1 already (its undispatched steps were
      // canceled there) while an agent still holds its command: that agent is told anyway.
      if (state.canceled) {
        retrySoon ||= (await this.#tellOfCancel(id)) > 0;
        break;
      }
      if (!state.open) break;
      watch = state.currentWave < state.waves;
      retrySoon ||= await this.#dispatchCurrentWave(id);
      const action = nextRolloutAction(state);
      if (action.kind === "wait") break;
      if (action.kind === "advance") {
        await advanceWave(db, id, state.currentWave, Date.now());
        console.log(`deployment ${id}: wave ${state.currentWave} of ${state.waves} ended; starting wave ${action.to}`);
      } else {
        await skipLaterWaves(db, id, action.after, skippedReason(action.after), Date.now());
        console.log(`deployment ${id}: wave ${action.after} failed; later waves skipped (stopOnFailure)`);
      }
    }
    if (retrySoon || watch) await this.ctx.storage.setAlarm(Date.now() + (retrySoon ? RETRY_PASS_MS : SAFETY_PASS_MS));
    else await this.ctx.storage.deleteAlarm();
  }

  // Every undispatched target of the waves started so far, page by page. True when
  // some could not be dispatched (the alarm tries again soon).
  async #dispatchCurrentWave(id: string): Promise<boolean> {
    for (;;) {
      const targets = await undispatchedTargets(this.env, { deploymentId: id }, DISPATCH_PAGE);
      if (targets.length === 0) return false;
      if ((await dispatchAll(this.env, targets)).failed > 0) return true;
      if (targets.length < DISPATCH_PAGE) return false;
    }
  }

  // Returns how many agents could not be told (the alarm tries again soon).
  async #tellOfCancel(id: string): Promise<number> {
    const agents = await targetsToTellOfCancel(this.env.DB, id);
    const results = await Promise.allSettled(agents.map((agentId) => sendCancel(this.env, id, agentId)));
    let failed = 0;
    results.forEach((r, i) => {
      if (r.status === "rejected") {
        failed++;
        console.error(`deployment ${id}: the cancel could not be stored for agent ${agents[i]} (retried):`, r.reason);
      }
    });
    return failed;
  }
}
