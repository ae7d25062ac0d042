import { describe, expect, it } from "vitest";
import type { RolloutState } from "../d1/rollout.ts";
import { assignWaves, nextRolloutAction, skippedReason, waveSize } from "./rollout-rules.ts";

describe("waves", () => {
  it("without a rollout every target is in wave 1", () => {
    const w = assignWaves(7, null);
    expect(w.waves).toBe(1);
    expect([0, 3, 6].map(w.waveOf)).toEqual([1, 1, 1]);
  });
  it("a count splits targets in order", () => {
    const w = assignWaves(6, { batchSize: 2, stopOnFailure: false });
    expect(w.waves).toBe(3);
    expect([0, 1, 2, 3, 4, 5].map(w.waveOf)).toEqual([1, 1, 2, 2, 3, 3]);
    expect(assignWaves(5, { batchSize: 2, stopOnFailure: false }).waves).toBe(3);
    expect(assignWaves(2, { batchSize: 10, stopOnFailure: false }).waves).toBe(1);
  });
  it("a percentage rounds up and is at least one agent", () => {
    expect(waveSize(10, { batchSize: "25%", stopOnFailure: false })).toBe(3);
    expect(waveSize(3, { batchSize: "1%", stopOnFailure: false })).toBe(1);
    expect(waveSize(8, { batchSize: "100%", stopOnFailure: false })).toBe(8);
    expect(assignWaves(10, { batchSize: "25%", stopOnFailure: false }).waves).toBe(4);
  });
});

describe("nextRolloutAction", () => {
  const base: RolloutState = { open: true, canceled: false, waves: 3, currentWave: 1, stopOnFailure: true, activeInWave: 0, failedInWave: 0 };
  it("waits while the wave runs", () => expect(nextRolloutAction({ ...base, activeInWave: 1 })).toEqual({ kind: "wait" }));
  it("advances when the wave ended well", () => expect(nextRolloutAction(base)).toEqual({ kind: "advance", to: 2 }));
  it("stops after a failed wave with stopOnFailure", () => expect(nextRolloutAction({ ...base, failedInWave: 1 })).toEqual({ kind: "stop", after: 1 }));
  it("goes on after a failed wave without stopOnFailure", () =>
    expect(nextRolloutAction({ ...base, failedInWave: 2, stopOnFailure: false })).toEqual({ kind: "advance", to: 2 }));
  it("does nothing after the last wave, for a canceled or ended deployment", () => {
    expect(nextRolloutAction({ ...base, currentWave: 3 })).toEqual({ kind: "wait" });
    expect(nextRolloutAction({ ...base, canceled: true })).toEqual({ kind: "wait" });
    expect(nextRolloutAction({ ...base, open: false })).toEqual({ kind: "wait" });
  });
});

describe("skippedReason", () => {
  it("names the failed wave", () => expect(skippedReason(2)).toBe("not run: wave 2 failed and the rollout stops on failure"));
});
