// Exponential back-off with full jitter (DESIGN.md §2: 0.5 s → 30 s).
// delay(attempt) = random(0, min(max, min * 2^attempt)).
import { TIMING } from "../schema/limits.ts";

export type BackoffOptions = { minMs: number; maxMs: number };
export const DEFAULT_BACKOFF: BackoffOptions = { minMs: TIMING.reconnectMinMs, maxMs: TIMING.reconnectMaxMs };

export function backoffCeilingMs(attempt: number, opts: BackoffOptions = DEFAULT_BACKOFF): number {
  const exp = opts.minMs * 2 ** Math.max(0, Math.min(attempt, 30));
  return Math.min(opts.maxMs, exp);
}

export function fullJitterDelayMs(attempt: number, opts: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  return Math.floor(random() * backoffCeilingMs(attempt, opts));
}

// A counter of consecutive failures: next() gives the delay before the next try.
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

// The monitor's restart policy: a worker that stayed up for `healthyMs` earns a fresh start.
export function restartDelayMs(backoff: Backoff, workerUptimeMs: number, healthyMs = 60_000): number {
  if (workerUptimeMs >= healthyMs) backoff.reset();
  return backoff.next();
}
