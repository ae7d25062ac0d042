// The agent's presence in D1 (agents.status, last_seen_at), as the channel sees it:
// online on hello, offline when the last greeted socket closes or goes silent. Close
// events are not guaranteed (and none comes for sockets lost with an evicted object),
// so the alarm sweeps by heartbeat as well. D1 failures are logged, not thrown: a socket
// event or the alarm must not fail over presence. docs/protocol.md §Presence.
import type { AlarmSchedule } from "./alarm-schedule.ts";
import type { Ledger } from "./ledger.ts";
import { setPresence } from "../d1/projection.ts";
import { setAppliedConfig, setUpgrade } from "../d1/agent-config.ts";
import type { UpgradeReport } from "../schema/agent-api.ts";
import { pickConfig } from "../schema/agent-config.ts";
import type { AgentConfig } from "../schema/api.ts";
import { splitByLiveness } from "./rules.ts";
import { CLOSE, closeQuietly, greetedSockets, heardAt, openSockets, type Attachment } from "./sockets.ts";
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
  // D1 refused a presence write: the agent may be revoked there without this channel knowing.
  revokedInD1: (agentId: string) => Promise<void>;
  now: () => number;
}) {
  const { sockets, db, ledger, work, alarm, offlineAfterMs, dispatchFromD1, revokedInD1, now: clock } = deps;

  // Presence writes run one at a time, in the order the socket events came: a hello's
  // "online" must not overtake the "offline" of the connection it replaced, and a hello
  // decides whether to write only once the writes before it are done.
  let queue: Promise<unknown> = Promise.resolve();
  const serially = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn);
    queue = run.catch(() => undefined);
    return run;
  };

  // Writes presence to D1 and remembers what D1 now shows; a refused write (no live
  // agent row) is handed to revokedInD1.
  const write = async (agentId: string, presence: Parameters<typeof setPresence>[2], version: string | null): Promise<void> => {
    if (await setPresence(db, agentId, presence)) work.rememberD1Presence(presence.status, version);
    else await revokedInD1(agentId);
  };

  return {
    // The config the agent says it applies (hello, status message): written to D1 only
    // when it differs from what was written last (docs/agent-lifecycle.md §Config).
    recordConfig(agentId: string, config: AgentConfig): Promise<void> {
      return serially(async () => {
        const text = JSON.stringify(pickConfig(config));
        if (work.appliedConfigIs(text)) return;
        try {
          await setAppliedConfig(db, agentId, pickConfig(config));
          work.rememberAppliedConfig(text);
        } catch (e) {
          console.error(`AgentChannel ${agentId}: could not record the applied config:`, e);
        }
      });
    },

    // How far an upgrade went, as the agent tells it (docs/agent-lifecycle.md §Upgrade).
    recordUpgrade(agentId: string, upgrade: UpgradeReport): Promise<void> {
      return serially(async () => {
        try {
          await setUpgrade(db, agentId, upgrade, clock());
        } catch (e) {
          console.error(`AgentChannel ${agentId}: could not record the upgrade state:`, e);
        }
      });
    },

    // A hello writes to D1 only when D1 does not already show the agent online with this
    // version (a reconnect flood costs nothing); the sweep keeps last_seen_at fresh.
    recordOnline(agentId: string, now: number, version: string): Promise<void> {
      return serially(async () => {
        if (work.d1PresenceIs("online", version)) return;
        try {
          await write(agentId, { status: "online", lastSeenAt: now, version }, version);
        } catch (e) {
          console.error(`AgentChannel ${agentId}: could not record presence online:`, e);
        }
      });
    },

    // A heartbeat is either a message (seenAt) or an auto-answered ping, whichever is later.
    async sweep(now: number): Promise<void> {
      const agentId = ledger.agentId();
      if (!agentId) return;
      const seen = openSockets(sockets.getWebSockets()).map((ws) => ({ ws, hello: (ws.deserializeAttachment() as Attachment).hello, lastSeenAt: heardAt(ws, sockets) }));
      const { alive, dead } = splitByLiveness(seen, now, offlineAfterMs());
      for (const s of dead) closeQuietly(s.ws, CLOSE.noHeartbeat, "no heartbeat");
      const greeted = alive.filter((s) => s.hello);
      const wrote = await serially(async () => {
        try {
          if (greeted.length > 0) {
            const version = (greeted[0].ws.deserializeAttachment() as Attachment).version;
            await write(agentId, { status: "online", lastSeenAt: Math.max(...greeted.map((s) => s.lastSeenAt)) }, version);
          } else if (work.presence().online || dead.length > 0) {
            // Also covers sockets that vanished with an evicted object (no close event ever came).
            work.wentOffline(now);
            const lastSeen = dead.length > 0 ? Math.max(...dead.map((s) => s.lastSeenAt)) : now;
            await write(agentId, { status: "offline", lastSeenAt: lastSeen }, null);
          }
          return true;
        } catch (e) {
          console.error(`AgentChannel ${agentId}: presence sweep could not update D1:`, e);
          return false;
        }
      });
      if (wrote && greeted.length > 0 && work.revokedAt() === null) await dispatchFromD1(agentId, now);
    },

    // From the close/error handlers: `closed` is the socket they handle. Another open
    // socket — greeted, or a reconnect that has not said hello yet — defers the
    // decision: its own hello, close or the sweep settles it, so a reconnect costs no
    // offline/online pair of D1 writes.
    async markOfflineUnlessConnected(closed: WebSocket): Promise<void> {
      const agentId = ledger.agentId();
      if (!agentId || openSockets(sockets.getWebSockets(), closed).length > 0) return;
      work.wentOffline(clock());
      await alarm.scheduleNext();
      await serially(async () => {
        // A hello on another socket may have come meanwhile: then the agent is online.
        if (greetedSockets(sockets.getWebSockets(), closed).length > 0) return;
        try {
          await write(agentId, { status: "offline", lastSeenAt: clock() }, null);
        } catch (e) {
          console.error(`AgentChannel ${agentId}: could not record presence offline:`, e);
        }
      });
    },
  };
}
