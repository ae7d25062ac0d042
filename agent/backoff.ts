// Exponential back-off with full jitter (docs/protocol.md §Reconnect: 0.5 s → 30 s).
// delay(attempt) = random(0, cap(attempt)); the cap is the one formula both ends
// share (schema/backoff.ts).
import { backoffCapMs } from "../schema/backoff.ts";
import { TIMING } from "../schema/limits.ts";

export type BackoffOptions = { minMs: number; maxMs: number };
export const DEFAULT_BACKOFF: BackoffOptions = { minMs: TIMING.reconnectMinMs, maxMs: TIMING.reconnectMaxMs };

export function backoffCeilingMs(attempt: number, opts: BackoffOptions = DEFAULT_BACKOFF): number {
  return backoffCapMs(attempt, opts.minMs, opts.maxMs);
}

export function fullJitterDelayMs(attempt: number, opts: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  return Math.floor(random() * backoffCeilingMs(attempt, opts));
}

// A counter of consecutive failures: next() gives the delay before the next try.
// An HTTP loop resets it after any successful request (§Reconnect).
export class Backoff {
  attempt = 0;
  readonly opts: BackoffOptions;
  readonly random: () => number;
  constructor(opts: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random) {
    this.opts = opts;
    this.random = random;
  }
  next(): number {
    const d = fullJitterDelayMs(this.attempt, this.opts, this.random);
    this.attempt++;
    return d;
  }
  reset(): void {
    this.attempt = 0;
  }
}

// The delay before starting again something long-lived that ended (the monitor's
// worker, the channel's connection): one that stayed up for `healthyMs` earns a
// fresh start, so a failure after a good run is retried quickly, while one that
// keeps failing fast climbs to the cap.
export function delayAfterRunMs(backoff: Backoff, upMs: number, healthyMs: number): number {
  if (upMs >= healthyMs) backoff.reset();
  return backoff.next();
}
