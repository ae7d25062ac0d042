// docs/protocol.md §Reconnect: the channel's reconnect delays grow with the outage.
import { describe, expect, it } from "vitest";
import { HEALTHY_CONNECTION_MS, ReconnectDelay } from "./channel.ts";

describe("channel reconnect delays", () => {
  it("draw below half the time the channel has been down, within 0.5 – 30 s", () => {
    expect(HEALTHY_CONNECTION_MS).toBe(10_000);
    const r = new ReconnectDelay(() => 0.999); // each delay just under its cap
    // A healthy connection closes at 100 s: the outage starts; the first attempt soon.
    expect(r.next(0, 100_000)).toBe(499);
    // Refused attempts: the cap follows the outage (6 s down → 3 s), not the attempt count.
    expect(r.next(null, 102_000)).toBe(999);
    expect(r.next(null, 106_000)).toBe(2997);
    // Opened, then dropped within 10 s (a server that accepts and closes): still the same outage.
    expect(r.next(110_000, 119_999)).toBe(9989);
    // A long outage reaches the 30 s cap and stays there.
    expect(r.next(null, 400_000)).toBe(29_970);
    expect(r.attempt).toBe(5);
  });

  it("a connection that stayed up 10 s ends the outage: the next one starts from 0.5 s", () => {
    const r = new ReconnectDelay(() => 0.999);
    r.next(null, 0);
    r.next(null, 60_000);
    expect(r.next(70_000, 80_000)).toBe(499);
    expect(r.attempt).toBe(1);
  });
});
