// docs/protocol.md §Reconnect: when the channel's reconnect back-off starts over.
import { describe, expect, it } from "vitest";
import { Backoff } from "../backoff.ts";
import { HEALTHY_CONNECTION_MS, reconnectDelayMs } from "./channel.ts";

describe("channel reconnect back-off", () => {
  it("climbs while connections fail or drop within 10 s, and starts over after one that stayed up 10 s", () => {
    expect(HEALTHY_CONNECTION_MS).toBe(10_000);
    const b = new Backoff(undefined, () => 0.999); // each delay just under its cap
    // refused outright (never opened): 0.5, 1, 2 s caps
    expect([reconnectDelayMs(b, null, 5_000), reconnectDelayMs(b, null, 6_000), reconnectDelayMs(b, null, 7_000)]).toEqual([499, 999, 1998]);
    // opened, then dropped just short of 10 s (a server that accepts and closes): still climbing
    expect(reconnectDelayMs(b, 20_000, 29_999)).toBe(3996);
    // stayed up 10 s: from the start again
    expect(reconnectDelayMs(b, 40_000, 50_000)).toBe(499);
    expect(reconnectDelayMs(b, null, 51_000)).toBe(999);
  });
});
