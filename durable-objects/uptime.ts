// docs/protocol.md §Agent lost, "Server downtime": an agent-lost deadline counts only
// time in which the server was up and could have heard from the agent. The channel
// cannot observe its own downtime directly; it sees it afterwards as an alarm that
// fires late. So while deadlines are pending the alarm ticks (every minute, every few
// seconds in the last stretch before a deadline), and each late tick pushes the
// deadlines back by the time lost, and never closer than a reconnect back-off's worth
// of up time from now. Pure functions; work.ts and alarm-schedule.ts apply them.
import { TIMING } from "../schema/limits.ts";

export const UPTIME = {
  // An alarm this much later than it was set for means the server was not running.
  lateToleranceMs: 5_000,
  // After a detected downtime an agent gets at least this long to come back: two of its
  // longest reconnect back-offs (docs/protocol.md §Reconnect).
  graceMs: 2 * TIMING.reconnectMaxMs,
  farTickMs: 60_000,
  nearTickMs: 5_000,
} as const;

// How long the server was down before this alarm, as far as the alarm can tell: its
// lateness, if beyond the tolerance. An alarm run early (by a test, or a wish brought
// forward) is not late.
export function downtimeBefore(expectedAt: number | null, now: number, toleranceMs: number = UPTIME.lateToleranceMs): number {
  if (expectedAt === null) return 0;
  const late = now - expectedAt;
  return late > toleranceMs ? late : 0;
}

// A deadline after `downtimeMs` of downtime: moved back by it, and at least a grace
// period from now.
export function deadlineAfterDowntime(dueAt: number, downtimeMs: number, now: number, graceMs: number = UPTIME.graceMs): number {
  if (downtimeMs <= 0) return dueAt;
  return Math.max(dueAt + downtimeMs, now + graceMs);
}

// When the alarm must fire next while a deadline is pending, so that downtime is seen
// in time: every minute, but no later than a grace period before the deadline, then
// every few seconds; never later than the deadline itself.
export function nextUptimeTick(deadline: number, now: number, u = UPTIME): number {
  const tick = deadline - now <= u.graceMs ? now + u.nearTickMs : Math.min(now + u.farTickMs, deadline - u.graceMs);
  return Math.min(tick, deadline);
}
