// docs/protocol.md §Presence: when the presence sweep is due.
import { describe, expect, it } from "vitest";
import { heartbeatFor } from "../schema/limits.ts";
import { presenceSweepAt } from "./alarm-schedule.ts";

describe("presence sweep", () => {
  it("is due when the freshest socket would turn silent, so a stall is found within offlineAfterMs", () => {
    // Last ping at 100 s, threshold 30 s: the sweep at 130.25 s finds it silent.
    expect(presenceSweepAt(100_000, 105_000, 30_000)).toBe(130_250);
    // A ping since moves it on: one wake-up per threshold for a live agent.
    expect(presenceSweepAt(129_000, 130_250, 30_000)).toBe(159_250);
  });

  it("never in the past or in a tight loop, and a full threshold without a socket", () => {
    expect(presenceSweepAt(10_000, 100_000, 30_000)).toBe(101_000);
    expect(presenceSweepAt(null, 100_000, 30_000)).toBe(130_000);
  });

  it("the ping interval a server asks for forgives two lost pings, within 1 – 10 s", () => {
    expect(heartbeatFor(30_000)).toBe(10_000);
    expect(heartbeatFor(9_000)).toBe(3_000);
    expect(heartbeatFor(2_000)).toBe(1_000);
    expect(heartbeatFor(600_000)).toBe(10_000);
  });
});
