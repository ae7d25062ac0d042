// The agent's presence in D1 (agents.status, last_seen_at), as the channel sees it:
// online on hello, offline when the last greeted socket closes or goes silent. Close
// events are not guaranteed (and none comes for sockets lost with an evicted object),
// so the alarm sweeps by heartbeat as well. D1 failures are logged, not thrown: a socket
// event or the alarm must not fail over presence. docs/protocol.md §Presence.
import type { AlarmSchedule } from "./alarm-schedule.ts";
import type { Ledger } from "./ledger.ts";
import { setPresence } from "./projection.ts";
import { splitByLiveness } from "./rules.ts";
import { CLOSE, closeQuietly, greetedSockets, openSockets, type Attachment } from "./sockets.ts";
import type { Work } from "./work.ts";

export type Presence = ReturnType<typeof openPresence>;

export function openPresence(deps: {
  sockets: Pick<DurableObjectState, "getWebSockets" | "getWebSocketAutoResponseTimestamp">;
  db: D1Database;
  ledger: Ledger;
  work: Work;
  alarm: AlarmSchedule;
  offlineAfterMs: () => number;
  // While the agent is connected, each sweep also stores what D1 left undispatched.
  dispatchFromD1: (agentId: string, now: number) => Promise<void>;
  now: () => number;
}) {
  const { sockets, db, ledger, work, alarm, offlineAfterMs, dispatchFromD1, now: clock } = deps;

  return {
    async recordOnline(agentId: string, now: number, version: string): Promise<void> {
      try {
        await setPresence(db, agentId, { status: "online", lastSeenAt: now, version });
      } catch (e) {
        console.error(`AgentChannel ${agentId}: could not record presence online:`, e);
      }
    },

    // A heartbeat is either a message (seenAt) or an auto-answered ping, whichever is later.
    async sweep(now: number): Promise<void> {
      const agentId = ledger.agentId();
      if (!agentId) return;
      const seen = openSockets(sockets.getWebSockets()).map((ws) => {
        const att = ws.deserializeAttachment() as Attachment;
        const pinged = sockets.getWebSocketAutoResponseTimestamp(ws)?.getTime() ?? 0;
        return { ws, hello: att.hello, lastSeenAt: Math.max(att.seenAt, pinged) };
      });
      const { alive, dead } = splitByLiveness(seen, now, offlineAfterMs());
      for (const s of dead) closeQuietly(s.ws, CLOSE.noHeartbeat, "no heartbeat");
      const greeted = alive.filter((s) => s.hello);
      try {
        if (greeted.length > 0) {
          await setPresence(db, agentId, { status: "online", lastSeenAt: Math.max(...greeted.map((s) => s.lastSeenAt)) });
          await dispatchFromD1(agentId, now);
        } else if (work.presence().online || dead.length > 0) {
          // Also covers sockets that vanished with an evicted object (no close event ever came).
          work.wentOffline(now);
          const lastSeen = dead.length > 0 ? Math.max(...dead.map((s) => s.lastSeenAt)) : now;
          await setPresence(db, agentId, { status: "offline", lastSeenAt: lastSeen });
        }
      } catch (e) {
        console.error(`AgentChannel ${agentId}: presence sweep could not update D1:`, e);
      }
    },

    // From the close/error handlers: `closed` is the socket they handle.
    async markOfflineUnlessConnected(closed: WebSocket): Promise<void> {
      const agentId = ledger.agentId();
      if (!agentId || greetedSockets(sockets.getWebSockets(), closed).length > 0) return;
      work.wentOffline(clock());
      await alarm.scheduleNext();
      try {
        await setPresence(db, agentId, { status: "offline", lastSeenAt: clock() });
      } catch (e) {
        console.error(`AgentChannel ${agentId}: could not record presence offline:`, e);
      }
    },
  };
}
