// The channel's one alarm serves everything that must happen without a request:
// projection retries (with backoff), the presence sweep while a socket is open or the
// agent still counts as online, and the earliest agent-lost deadline (ticking towards it,
// so that a server downtime is noticed and not counted: uptime.ts). One alarm per
// Durable Object is all the runtime offers, so every wish goes through here.
import type { Ledger } from "./ledger.ts";
import { projectionBackoffMs } from "./rules.ts";
import { nextUptimeTick } from "./uptime.ts";
import type { Work } from "./work.ts";

export type AlarmSchedule = ReturnType<typeof openAlarmSchedule>;

const SWEEP_SLACK_MS = 250;
const MIN_SWEEP_GAP_MS = 1000;

// docs/protocol.md §Presence: the sweep is due when the freshest socket would turn
// silent, so a stalled agent is found offline within offlineAfterMs of its last ping —
// not up to twice that, as with a sweep every offlineAfterMs from whenever it ran — at
// the same cost: a live agent's pings move the sweep on, one wake-up per offlineAfterMs.
export function presenceSweepAt(lastHeardAt: number | null, now: number, offlineAfterMs: number): number {
  if (lastHeardAt === null) return now + offlineAfterMs;
  return Math.max(now + MIN_SWEEP_GAP_MS, lastHeardAt + offlineAfterMs + SWEEP_SLACK_MS);
}

export function openAlarmSchedule(deps: {
  storage: DurableObjectStorage;
  ledger: Ledger;
  work: Work;
  hasOpenSocket: () => boolean;
  // When the freshest open socket last carried something (heardAt), null without one.
  lastHeardAt: () => number | null;
  offlineAfterMs: () => number;
  now: () => number;
}) {
  const { storage, ledger, work, hasOpenSocket, lastHeardAt, offlineAfterMs, now: clock } = deps;

  // The time each alarm is set for is kept, so that alarm() can tell it fired late: the
  // server was down meanwhile (uptime.ts).
  const set = async (at: number): Promise<void> => {
    work.setAlarmExpectedAt(at);
    await storage.setAlarm(at);
  };

  // Never pushes the alarm back: an earlier wish (another due time) must still fire.
  const noLaterThan = async (at: number): Promise<void> => {
    const current = await storage.getAlarm();
    if (current === null || current > at) await set(at);
  };

  return {
    noLaterThan,

    // From alarm(): sets the next wake-up (the one that fired is spent). Elsewhere: only
    // ever brings the alarm forward.
    async scheduleNext(fromAlarm = false): Promise<void> {
      const now = clock();
      const due: number[] = [];
      const outbox = ledger.outboxStats();
      if (outbox.pending > 0) due.push(now + projectionBackoffMs(outbox.maxAttempts));
      if (hasOpenSocket() || work.presence().online) due.push(presenceSweepAt(lastHeardAt(), now, offlineAfterMs()));
      const deadline = work.nextDueAt();
      if (deadline !== null) due.push(Math.max(now, nextUptimeTick(deadline, now)));
      if (due.length === 0) return;
      if (fromAlarm) await set(Math.min(...due));
      else await noLaterThan(Math.min(...due));
    },
  };
}
