// The channel's own decisions, on the same SQLite ledger: presence as the DO last saw
// it, agent-lost deadlines (a table of due work driven by the one alarm) and revoke.
// Each decision is committed together with the projection job that carries it to D1.
// docs/protocol.md §Presence, §Agent lost, §Revoke.
import { and, asc, eq, isNull, lte, max, min } from "drizzle-orm";
import { drizzle } from "drizzle-orm/durable-sqlite";
import { appliedReports, channelMeta, commandSteps, commands, dueWork, projectionOutbox } from "../schema/ledger.ts";
import { agentLostDeadline } from "./rules.ts";
import { deadlineAfterDowntime } from "./uptime.ts";

const META_PRESENCE = "presence"; // "online" | "offline"; unset: never greeted
const META_OFFLINE_SINCE = "offline_since";
const META_REVOKED_AT = "revoked_at";
const META_D1_PRESENCE = "d1_presence"; // what was last written to D1: "<status>|<version>"
const META_DISPATCH_CHECKED_AT = "dispatch_checked_at";
const META_ALARM_EXPECTED_AT = "alarm_expected_at";
const META_ALARMS = "alarms"; // how many times the alarm woke this object (idle cost, bench)
const META_APPLIED_CONFIG = "applied_config"; // what was last written to D1 as the agent's applied config

export type Work = ReturnType<typeof openWork>;

export function openWork(storage: DurableObjectStorage) {
  const db = drizzle(storage);
  const tx = <T>(fn: () => T): T => storage.transactionSync(fn);
  const getMeta = (key: string): string | null =>
    db.select({ value: channelMeta.value }).from(channelMeta).where(eq(channelMeta.key, key)).get()?.value ?? null;
  const setMeta = (key: string, value: string) =>
    db.insert(channelMeta).values({ key, value }).onConflictDoUpdate({ target: channelMeta.key, set: { value } }).run();

  const numberMeta = (key: string): number | null => {
    const v = getMeta(key);
    return v === null ? null : Number(v);
  };
  const offlineSince = (): number | null => numberMeta(META_OFFLINE_SINCE);

  // One due row per open command not yet given up on; an existing row keeps its time.
  const scheduleAgentLost = (seq: number, createdAt: number, seconds: number, since: number | null) =>
    db
      .insert(dueWork)
      .values({ key: `agent-lost:${seq}`, kind: "agent-lost", commandSeq: seq, dueAt: agentLostDeadline(since, createdAt, seconds) })
      .onConflictDoNothing()
      .run();

  return {
    // docs/protocol.md §Presence: an agent's hello costs D1 work only when it changes
    // what D1 shows (status or version), so these remember what was written last.
    d1PresenceIs: (status: "online" | "offline", version: string | null): boolean => getMeta(META_D1_PRESENCE) === `${status}|${version ?? ""}`,
    rememberD1Presence: (status: "online" | "offline", version: string | null): void => void setMeta(META_D1_PRESENCE, `${status}|${version ?? ""}`),
    // The D1 lookup of undispatched targets runs at most once per interval, however
    // often the agent reconnects.
    dispatchCheckDue(now: number, intervalMs: number): boolean {
      return tx(() => {
        const last = numberMeta(META_DISPATCH_CHECKED_AT);
        if (last !== null && now - last < intervalMs && now >= last) return false;
        setMeta(META_DISPATCH_CHECKED_AT, String(now));
        return true;
      });
    },

    appliedConfigIs: (json: string): boolean => getMeta(META_APPLIED_CONFIG) === json,
    rememberAppliedConfig: (json: string): void => void setMeta(META_APPLIED_CONFIG, json),

    alarmExpectedAt: (): number | null => numberMeta(META_ALARM_EXPECTED_AT),
    countAlarm: (): void => void setMeta(META_ALARMS, String((numberMeta(META_ALARMS) ?? 0) + 1)),
    alarms: (): number => numberMeta(META_ALARMS) ?? 0,
    setAlarmExpectedAt: (at: number): void => void setMeta(META_ALARM_EXPECTED_AT, String(at)),

    // docs/protocol.md §Agent lost, "Server downtime": the server was not running for
    // `downtimeMs` (seen as a late alarm). That time does not count against the agent:
    // every pending deadline and the offline clock move back by it, and no deadline is
    // closer than the grace period.
    serverWasDown(downtimeMs: number, now: number): number {
      if (downtimeMs <= 0) return 0;
      return tx(() => {
        const since = numberMeta(META_OFFLINE_SINCE);
        if (since !== null) setMeta(META_OFFLINE_SINCE, String(Math.min(now, since + downtimeMs)));
        const rows = db.select().from(dueWork).all();
        for (const r of rows) db.update(dueWork).set({ dueAt: deadlineAfterDowntime(r.dueAt, downtimeMs, now) }).where(eq(dueWork.key, r.key)).run();
        return rows.length;
      });
    },

    revokedAt: (): number | null => numberMeta(META_REVOKED_AT),

    presence: () => ({ online: getMeta(META_PRESENCE) === "online", offlineSince: offlineSince() }),

    // A greeted socket: the agent is back, every agent-lost deadline is off.
    wentOnline(): void {
      tx(() => {
        setMeta(META_PRESENCE, "online");
        db.delete(dueWork).where(eq(dueWork.kind, "agent-lost")).run();
      });
    },

    // The last greeted socket is gone (closed, silent, or lost with an evicted object).
    // Starts the clock once per outage: a repeated call keeps the first offlineSince.
    wentOffline(now: number): boolean {
      return tx(() => {
        if (getMeta(META_PRESENCE) === "offline") return false;
        setMeta(META_PRESENCE, "offline");
        setMeta(META_OFFLINE_SINCE, String(now));
        const open = db
          .select({ seq: commands.seq, createdAt: commands.createdAt, seconds: commands.agentLostAfterSeconds })
          .from(commands)
          .where(and(isNull(commands.finishedAt), isNull(commands.lostAt)))
          .all();
        for (const c of open) scheduleAgentLost(c.seq, c.createdAt, c.seconds, now);
        return true;
      });
    },

    // A command stored while no greeted socket is connected gets its deadline at once
    // (a never-seen agent's clock starts at the command's creation).
    commandWhileOffline(seq: number, createdAt: number, seconds: number): void {
      tx(() => scheduleAgentLost(seq, createdAt, seconds, offlineSince()));
    },

    nextDueAt: (): number | null => db.select({ at: min(dueWork.dueAt) }).from(dueWork).get()?.at ?? null,

    // Gives up on every command whose deadline passed: marks it lost (once) and queues
    // the D1 job that fails its unfinished steps. Only called while no greeted socket exists.
    takeDueAgentLost(now: number): number {
      return tx(() => {
        const due = db.select().from(dueWork).where(and(eq(dueWork.kind, "agent-lost"), lte(dueWork.dueAt, now))).orderBy(asc(dueWork.dueAt)).all();
        let lost = 0;
        for (const d of due) {
          db.delete(dueWork).where(eq(dueWork.key, d.key)).run();
          const c = db
            .update(commands)
            .set({ lostAt: now })
            .where(and(eq(commands.seq, d.commandSeq), isNull(commands.finishedAt), isNull(commands.lostAt)))
            .returning({ deploymentId: commands.deploymentId })
            .get();
          if (!c) continue;
          db.insert(projectionOutbox)
            .values({ kind: "agent-lost", key: String(d.commandSeq), body: JSON.stringify({ deploymentId: c.deploymentId, at: now }), createdAt: now })
            .onConflictDoNothing()
            .run();
          lost++;
        }
        return lost;
      });
    },

    // Ends all open work for good: nothing will come from this agent again. The D1 job
    // cancels every active step of the agent (dispatched or not) with a recorded reason.
    // Safe to repeat; a command stored after the revoke is ended by calling it again.
    revoke(now: number): number {
      return tx(() => {
        const first = getMeta(META_REVOKED_AT);
        const revokedAt = first === null ? now : Number(first);
        if (first === null) setMeta(META_REVOKED_AT, String(now));
        const open = db.select({ seq: commands.seq }).from(commands).where(isNull(commands.finishedAt)).all();
        for (const c of open) {
          db.update(commandSteps).set({ finishedAt: now }).where(and(eq(commandSteps.commandSeq, c.seq), isNull(commandSteps.finishedAt))).run();
          db.update(commands).set({ finishedAt: now }).where(eq(commands.seq, c.seq)).run();
        }
        db.delete(dueWork).run();
        db.delete(appliedReports).run(); // every step is settled now: nothing is applied again
        const headSeq = db.select({ seq: max(commands.seq) }).from(commands).get()?.seq ?? 0;
        db.insert(projectionOutbox)
          .values({ kind: "revoked", key: String(headSeq), body: JSON.stringify({ at: now }), createdAt: now })
          .onConflictDoNothing()
          .run();
        return revokedAt;
      });
    },
  };
}
