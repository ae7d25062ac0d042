// docs/protocol.md §Reconnect (full-jitter back-off).
import { describe, expect, it } from "vitest";
import { Backoff, backoffCeilingMs, delayAfterRunMs, fullJitterDelayMs } from "./backoff.ts";
import { HEALTHY_WORKER_MS } from "./monitor/monitor.ts";

describe("back-off with full jitter", () => {
  it("doubles the ceiling from 0.5 s and caps it at 30 s", () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7, 50].map((a) => backoffCeilingMs(a))).toEqual([500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  });

  it("draws the delay uniformly between 0 and the ceiling", () => {
    expect(fullJitterDelayMs(3, undefined, () => 0)).toBe(0);
    expect(fullJitterDelayMs(3, undefined, () => 0.5)).toBe(2000);
    expect(fullJitterDelayMs(3, undefined, () => 0.999999)).toBe(3999);
    for (let i = 0; i < 1000; i++) {
      const d = fullJitterDelayMs(10);
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(30_000);
    }
  });

  it("counts consecutive failures and starts over after reset", () => {
    const b = new Backoff(undefined, () => 0.999);
    expect([b.next(), b.next(), b.next()]).toEqual([499, 999, 1998]);
    b.reset();
    expect(b.next()).toBe(499);
  });

  it("restarts a worker that ran for a healthy minute with a fresh back-off", () => {
    expect(HEALTHY_WORKER_MS).toBe(60_000);
    const b = new Backoff(undefined, () => 0.999);
    for (let i = 0; i < 8; i++) delayAfterRunMs(b, 1_000, HEALTHY_WORKER_MS);
    expect(delayAfterRunMs(b, 1_000, HEALTHY_WORKER_MS)).toBe(29_970); // still failing fast: at the cap
    expect(delayAfterRunMs(b, 60_000, HEALTHY_WORKER_MS)).toBe(499); // healthy for a minute: from the start
    expect(delayAfterRunMs(b, 59_999, HEALTHY_WORKER_MS)).toBe(999);
  });
});
