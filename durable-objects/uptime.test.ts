// docs/protocol.md §Agent lost, "Server downtime" (uptime.ts).
import { describe, expect, it } from "vitest";
import { deadlineAfterDowntime, downtimeBefore, nextUptimeTick, UPTIME } from "./uptime.ts";

describe("server downtime seen as a late alarm", () => {
  it("counts lateness beyond the tolerance as downtime, never an early run", () => {
    expect(downtimeBefore(null, 10_000)).toBe(0);
    expect(downtimeBefore(10_000, 9_000)).toBe(0);
    expect(downtimeBefore(10_000, 10_000 + UPTIME.lateToleranceMs)).toBe(0);
    expect(downtimeBefore(10_000, 10_001 + UPTIME.lateToleranceMs)).toBe(UPTIME.lateToleranceMs + 1);
    expect(downtimeBefore(0, 2_400_000)).toBe(2_400_000);
  });

  it("moves a deadline back by the downtime, and never closer than the grace period", () => {
    expect(deadlineAfterDowntime(900_000, 0, 100_000)).toBe(900_000);
    // No downtime: even a deadline already close stays where it is.
    expect(deadlineAfterDowntime(1_000, 0, 5_000)).toBe(1_000);
    // 40 minutes down, the deadline fell inside the outage: back by 40 min.
    expect(deadlineAfterDowntime(900_000, 2_400_000, 2_500_000)).toBe(3_300_000);
    // Down for 10 s right before the deadline: still a grace period after the server is back.
    expect(deadlineAfterDowntime(100_000, 10_000, 105_000)).toBe(105_000 + UPTIME.graceMs);
    expect(UPTIME.graceMs).toBe(60_000); // two of the agent's longest reconnect back-offs (30 s)
  });

  it("ticks every minute while a deadline is far, every few seconds in its last grace period, never past it", () => {
    const far = 10 * 60_000;
    expect(nextUptimeTick(far, 0)).toBe(UPTIME.farTickMs);
    // The far tick stops a grace period before the deadline.
    expect(nextUptimeTick(far, far - UPTIME.graceMs - 30_000)).toBe(far - UPTIME.graceMs);
    expect(nextUptimeTick(far, far - UPTIME.graceMs)).toBe(far - UPTIME.graceMs + UPTIME.nearTickMs);
    expect(nextUptimeTick(far, far - 2_000)).toBe(far);
    // However the clock moved, a tick is never later than the next far tick.
    for (let now = 0; now < far; now += 7_919) expect(nextUptimeTick(far, now) - now).toBeLessThanOrEqual(UPTIME.farTickMs);
  });
});
