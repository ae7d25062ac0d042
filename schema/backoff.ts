// The one back-off formula of both ends: a cap that starts at `minMs` and doubles
// with each consecutive failure, up to `maxMs`. The agent draws its delays uniformly
// below it (full jitter, agent/backoff.ts); the channel retries a failed D1
// projection after it (durable-objects/rules.ts).
export function backoffCapMs(attempt: number, minMs: number, maxMs: number): number {
  return Math.min(maxMs, minMs * 2 ** Math.max(0, Math.min(attempt, 30)));
}
