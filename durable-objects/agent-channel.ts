// One AgentChannel per agent: a thin transport shell. It holds the agent's
// hibernatable WebSocket and answers pulls and report batches from the ledger
// (ledger.ts); the rest is plain logic it calls: deadlines and revoke (work.ts), the
// D1 projection (projection-drain.ts), presence (presence.ts), self-dispatch
// (self-dispatch.ts) and the one alarm (alarm-schedule.ts). Nothing that matters lives
// only in memory: the ledger and socket attachments survive hibernation; the in-memory
// state is per-request plumbing.
import { DurableObject } from "cloudflare:workers";
import { AGENT_REVOKED, REVOKED_CLOSE_REASON, REVOKED_ERROR, agentMessage, commandBody, type CommandBody, type PullResponse, type Report, type ServerMessage } from "../schema/agent-api.ts";
import { describeZodError } from "../schema/errors.ts";
import { errorResponse } from "../schema/http.ts";
import { HEARTBEAT_PING, HEARTBEAT_PONG, heartbeatFor, LIMITS, TIMING } from "../schema/limits.ts";
import { openAlarmSchedule, type AlarmSchedule } from "./alarm-schedule.ts";
import { migrateLedger, openLedger, type Ledger } from "./ledger.ts";
import { openPresence, type Presence } from "./presence.ts";
import { openProjectionDrain, type ProjectionDrain } from "./projection-drain.ts";
import { isRevokedInD1 } from "../d1/projection.ts";
import { parseOfflineAfterMs } from "./rules.ts";
import { coordinatorOf } from "./channels.ts";
import { progressUpgradeRollouts } from "./upgrade-rollouts.ts";
import { dispatchFromD1 } from "./self-dispatch.ts";
import { CLOSE, closeQuietly, closeReplyCode, greetedSockets, heardAt, openSockets, send, type Attachment } from "./sockets.ts";
import { downtimeBefore } from "./uptime.ts";
import { openWork, type Work } from "./work.ts";

// The Worker authenticates the WebSocket upgrade and names the agent in this header;
// it strips any such header the client sent.
export const AGENT_ID_HEADER = "X-Outpost-Agent-Id";

// A report batch waits this long for its projection before being answered; the
// projection itself carries on (and is retried by the alarm if it fails).
const PROJECTION_WAIT_MS = 2000;
// The D1 lookup of undispatched targets runs at most this often from hellos and sweeps.
const SELF_DISPATCH_CHECK_MS = 5000;

// Read at call time, never captured: the tests move Date.now to fake the clock.
const clock = () => Date.now();

// RPC answers, which the Worker turns into HTTP: what was asked for, or a refusal with
// the status, message and extra fields of its error answer.
// (Plain values only: RPC carries what it can serialize.)
type Extra = Record<string, string | number>;
export type Refusal = { status: 401 | 409 | 422; error: string; extra: Extra };
export type Outcome<T> = { ok: true; value: T } | { ok: false; refused: Refusal };
const refuse = (status: Refusal["status"], error: string, extra: Extra = {}): { ok: false; refused: Refusal } => ({ ok: false, refused: { status, error, extra } });
const revoked = () => refuse(401, REVOKED_ERROR, { code: AGENT_REVOKED });
// alarms: how many times the alarm woke this object so far (what an idle agent costs).
export type ChannelStatus = { connected: boolean; head: number; acked: number; openCommands: number; pendingProjections: number; waitingPulls: number; alarms: number };

export class AgentChannel extends DurableObject<Cloudflare.Env> {
  private readonly ledger: Ledger;
  private readonly work: Work;
  private readonly alarms: AlarmSchedule;
  private readonly projection: ProjectionDrain;
  private readonly presence: Presence;
  private readonly pullWaiters = new Set<() => void>();

  constructor(ctx: DurableObjectState, env: Cloudflare.Env) {
    super(ctx, env);
    this.ledger = openLedger(ctx.storage);
    this.work = openWork(ctx.storage);
    const offlineAfterMs = () => this.offlineAfterMs();
    this.alarms = openAlarmSchedule({
      storage: ctx.storage,
      ledger: this.ledger,
      work: this.work,
      hasOpenSocket: () => openSockets(ctx.getWebSockets()).length > 0,
      lastHeardAt: () => {
        const open = openSockets(ctx.getWebSockets());
        return open.length === 0 ? null : Math.max(...open.map((ws) => heardAt(ws, ctx)));
      },
      offlineAfterMs,
      now: clock,
    });
    this.projection = openProjectionDrain({
      ledger: this.ledger,
      db: env.DB,
      retryNoLaterThan: (at) => this.alarms.noLaterThan(at),
      onSettled: (deploymentIds) => this.pokeCoordinators(deploymentIds),
      now: clock,
    });
    this.presence = openPresence({
      sockets: ctx,
      db: env.DB,
      ledger: this.ledger,
      work: this.work,
      alarm: this.alarms,
      offlineAfterMs,
      dispatchFromD1: (agentId, now) => this.dispatchFromD1(agentId, now),
      revokedInD1: (agentId) => this.revokeIfRevokedInD1(agentId),
      now: clock,
    });
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(HEARTBEAT_PING, HEARTBEAT_PONG));
    void ctx.blockConcurrencyWhile(() => migrateLedger(ctx.storage));
  }

  // ---- RPC from the Worker ----

  // A batch of reports the Worker has already validated. Every id is acknowledged
  // (new and already-applied alike); nothing is applied if one names a step that
  // is not this agent's. `sentAt` (the agent's clock) places their times on ours.
  async receiveReports(agentId: string, reports: Report[], sentAt: number): Promise<Outcome<{ acked: string[] }>> {
    this.ledger.bindAgent(agentId);
    // Revoked between the Worker's credential check and this call.
    if (this.work.revokedAt() !== null) return revoked();
    const foreign = this.ledger.foreignReports(reports);
    if (foreign.length > 0) {
      const steps = [...new Set(foreign.map((r) => r.stepId))].slice(0, 10).join(", ");
      return refuse(422, `reports name steps that are not this agent's: ${steps}`);
    }
    const receivedAt = Date.now();
    const { acked, applied } = this.ledger.applyReports(reports, receivedAt, receivedAt - sentAt);
    if (applied.length > 0) {
      const drained = this.projection.drain();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([drained, new Promise<void>((r) => (timer = setTimeout(r, PROJECTION_WAIT_MS)))]);
      if (timer !== undefined) clearTimeout(timer);
    }
    return { ok: true, value: { acked } };
  }

  // Stores a command (idempotent by id) and tells the agent there is something new.
  // `coordinated`: the deployment has later rollout waves (docs/protocol.md §Rollout).
  async enqueue(agentId: string, body: CommandBody, opts: { coordinated?: boolean } = {}): Promise<{ seq: number; created: boolean }> {
    this.ledger.bindAgent(agentId);
    const result = this.store(commandBody.parse(body), Date.now(), opts.coordinated ?? false);
    await this.alarms.scheduleNext();
    if (this.ledger.outboxStats().pending > 0) this.ctx.waitUntil(this.projection.drain());
    return result;
  }

  // Many commands in one call (the ledger throughput bench): stored in one implicit
  // transaction, the agent told once.
  async enqueueMany(agentId: string, bodies: CommandBody[]): Promise<{ head: number }> {
    this.ledger.bindAgent(agentId);
    const now = Date.now();
    for (const body of bodies) this.store(commandBody.parse(body), now, false, false);
    this.announce(this.ledger.head());
    await this.alarms.scheduleNext();
    return { head: this.ledger.head() };
  }

  // docs/protocol.md §Revoke: closes the sockets, releases long-polls, ends open work.
  async revoke(agentId: string): Promise<{ revokedAt: number }> {
    this.ledger.bindAgent(agentId);
    const revokedAt = this.work.revoke(Date.now());
    for (const ws of this.ctx.getWebSockets()) closeQuietly(ws, CLOSE.revoked, REVOKED_CLOSE_REASON);
    for (const wake of [...this.pullWaiters]) wake();
    await this.projection.drain();
    await this.alarms.scheduleNext();
    return { revokedAt };
  }

  // docs/protocol.md §Resync (the chaos suite compares this with the agent's journal).
  async status(agentId: string): Promise<ChannelStatus> {
    this.ledger.bindAgent(agentId);
    return {
      connected: this.connected(),
      head: this.ledger.head(),
      acked: this.ledger.ackedSeq(),
      openCommands: this.ledger.openCommands(),
      pendingProjections: this.ledger.outboxStats().pending,
      waitingPulls: this.pullWaiters.size,
      alarms: this.work.alarms(),
    };
  }

  // Test hook (OUTPOST_TEST_HOOKS=1): resets the object the way an eviction does —
  // in-memory state and sockets gone, storage kept. The caller's RPC fails by design.
  async evict(): Promise<void> {
    this.ctx.abort("evicted by test hook");
  }

  // docs/protocol.md §Commands: `after` acknowledges every seq up to it; answers the
  // commands after it, holding a pull with nothing to return for up to `wait` seconds.
  async pull(agentId: string, after: number, wait: number): Promise<Outcome<PullResponse>> {
    this.ledger.bindAgent(agentId);
    if (this.work.revokedAt() !== null) return revoked();
    let head = this.ledger.head();
    if (after > head) return refuse(409, `after=${after} is beyond the last command (${head})`, { head });
    // Read before this pull acknowledges: a journal that lost commands says a lower
    // `after` than the ledger already saw, and the agent must learn which (§Commands).
    const acked = this.ledger.ackedSeq();
    this.ledger.ack(after);
    let commands = this.ledger.commandsAfter(after);
    if (commands.length === 0 && wait > 0) {
      await this.waitForCommand(wait * 1000);
      // A revoke releases the long-poll: the agent learns it at once.
      if (this.work.revokedAt() !== null) return revoked();
      head = this.ledger.head();
      commands = this.ledger.commandsAfter(after);
    }
    return { ok: true, value: { commands, head, acked } };
  }

  // ---- the WebSocket upgrade: the only HTTP this object serves ----
  // Already authenticated by the Worker, which names the agent in AGENT_ID_HEADER.

  async fetch(request: Request): Promise<Response> {
    const agentId = request.headers.get(AGENT_ID_HEADER);
    if (!agentId) {
      console.error(`AgentChannel ${this.ctx.id}: request without ${AGENT_ID_HEADER}`);
      return errorResponse(500, "internal error");
    }
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return errorResponse(426, "expected a WebSocket upgrade");
    }
    this.ledger.bindAgent(agentId);
    if (this.work.revokedAt() !== null) {
      const { status, error, extra } = revoked().refused;
      return errorResponse(status, error, extra);
    }
    // Older sockets are closed when this one says hello, not now: an upgrade the agent
    // already gave up on (its handshake timed out) may reach this object after the
    // agent's next attempt, and must not close the connection that is in use.
    const [client, server] = Object.values(new WebSocketPair());
    this.ctx.acceptWebSocket(server);
    const now = Date.now();
    server.serializeAttachment({ connectedAt: now, seenAt: now, hello: false, version: null } satisfies Attachment);
    await this.alarms.noLaterThan(now + this.offlineAfterMs());
    return new Response(null, { status: 101, webSocket: client });
  }

  // ---- WebSocket (hibernation API) ----

  async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    if (typeof message !== "string") return closeQuietly(ws, CLOSE.policy, "binary messages are not accepted");
    if (message.length > LIMITS.wsMessageBytes) return closeQuietly(ws, CLOSE.tooBig, "message too large");
    let value: unknown;
    try {
      value = JSON.parse(message);
    } catch {
      return closeQuietly(ws, CLOSE.policy, "message is not JSON");
    }
    const parsed = agentMessage.safeParse(value);
    if (!parsed.success) return closeQuietly(ws, CLOSE.policy, `invalid message: ${describeZodError(parsed.error)}`);
    const msg = parsed.data;
    const agentId = this.ledger.agentId();
    if (!agentId) {
      console.error(`AgentChannel ${this.ctx.id}: hello on a channel that has no agent id`);
      return closeQuietly(ws, CLOSE.internal, "channel not initialised");
    }
    if (this.work.revokedAt() !== null) return closeQuietly(ws, CLOSE.revoked, REVOKED_CLOSE_REASON);
    const att = ws.deserializeAttachment() as Attachment;
    const now = Date.now();
    if (msg.type === "status") {
      if (!att.hello) return closeQuietly(ws, CLOSE.policy, "a status message before the hello");
      ws.serializeAttachment({ ...att, seenAt: now } satisfies Attachment);
      if (msg.config) await this.presence.recordConfig(agentId, msg.config);
      if (msg.upgrade) {
        await this.presence.recordUpgrade(agentId, msg.upgrade);
        // An end state may let a rollout of many agents move on (or stop it).
        if (["succeeded", "rolled-back", "failed"].includes(msg.upgrade.state)) {
          this.ctx.waitUntil(progressUpgradeRollouts(this.env, agentId).catch((e: unknown) => console.error(`AgentChannel ${agentId}: upgrade rollouts not moved on:`, e)));
        }
      }
      return;
    }
    const hello = msg;
    // docs/protocol.md §Resync: one hello per connection. A second one would only make
    // the channel repeat work (and D1 writes) it already did: refused.
    if (att.hello) return closeQuietly(ws, CLOSE.policy, "hello was already received on this connection");
    ws.serializeAttachment({ ...att, seenAt: now, hello: true, version: hello.version } satisfies Attachment);
    // The agent speaks on this connection now: any other is stale (a reconnect's predecessor,
    // or an abandoned upgrade that never said hello).
    for (const other of openSockets(this.ctx.getWebSockets(), ws)) closeQuietly(other, CLOSE.replaced, "replaced by a newer connection");
    this.work.wentOnline();
    send(ws, this.welcome(agentId, hello.lastSeq, hello.reports));
    // D1 work only when it changes something: the agent's presence or version as D1
    // shows it, and (at most every few seconds) the lookup of undispatched targets.
    await this.presence.recordOnline(agentId, now, hello.version);
    if (hello.config) await this.presence.recordConfig(agentId, hello.config);
    await this.dispatchFromD1(agentId, now);
    await this.alarms.scheduleNext();
  }

  // docs/protocol.md §Resync. hello.lastSeq is durable on the agent, so it acknowledges
  // like a pull's `after` (never beyond head: the agent cannot hold what was never stored).
  private welcome(agentId: string, lastSeq: number, reports: readonly string[]): ServerMessage {
    const head = this.ledger.head();
    this.ledger.ack(Math.min(lastSeq, head));
    return {
      type: "welcome",
      agentId,
      head,
      acked: this.ledger.ackedSeq(),
      applied: this.ledger.appliedAmong(reports),
      expecting: this.ledger.expecting(Math.min(lastSeq, head)),
      heartbeatMs: heartbeatFor(this.offlineAfterMs()),
    };
  }

  // The peer closed: complete the handshake (closeReplyCode keeps it legal) and settle
  // presence. A socket already closed is left alone (closeQuietly).
  async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    closeQuietly(ws, closeReplyCode(code), reason);
    await this.presence.markOfflineUnlessConnected(ws);
  }

  // The runtime reports a broken connection here — an agent's machine vanishing, a
  // proxy cutting the TCP stream — which is the everyday life of an agent behind a
  // firewall, not a server fault: it is logged as a warning, and nothing else depends
  // on it (presence also follows heartbeats and the sweep).
  async webSocketError(ws: WebSocket, error: unknown): Promise<void> {
    console.warn(`AgentChannel ${this.ledger.agentId()}: WebSocket broken: ${error instanceof Error ? error.message : String(error)}`);
    closeQuietly(ws, CLOSE.internal, "socket error");
    await this.presence.markOfflineUnlessConnected(ws);
  }

  // ---- Alarm: projection retries, presence sweep, self-dispatch, agent-lost deadlines ----

  async alarm(): Promise<void> {
    const now = Date.now();
    this.work.countAlarm();
    // A late alarm means the server was not running: that time does not count against
    // the agent's agent-lost deadlines (uptime.ts).
    const downtime = downtimeBefore(this.work.alarmExpectedAt(), now);
    if (downtime > 0 && this.work.serverWasDown(downtime, now) > 0) {
      console.log(`AgentChannel ${this.ledger.agentId()}: alarm ${Math.round(downtime / 1000)} s late (server down?); agent-lost deadlines moved back`);
    }
    if (this.ledger.outboxStats().pending > 0) await this.projection.drain();
    await this.presence.sweep(now);
    if (!this.connected() && this.work.takeDueAgentLost(now) > 0) await this.projection.drain();
    await this.alarms.scheduleNext(true);
  }

  // ---- internals ----

  // `announce`: tell the agent now (false: the caller tells it once for many).
  private store(command: CommandBody, now: number, coordinated = false, announce = true): { seq: number; created: boolean } {
    const result = this.ledger.enqueue(command, now, coordinated);
    if (!result.created) return result;
    if (this.work.revokedAt() !== null) {
      // Dispatched after the revoke (a race): end it like the rest of the agent's work.
      this.work.revoke(now);
      return result;
    }
    if (!this.connected() && command.type === "deploy") this.work.commandWhileOffline(result.seq, now, command.agentLostAfterSeconds);
    if (announce) this.announce(this.ledger.head());
    return result;
  }

  private dispatchFromD1(agentId: string, now: number): Promise<void> {
    if (!this.work.dispatchCheckDue(now, SELF_DISPATCH_CHECK_MS)) return Promise.resolve();
    return dispatchFromD1({ env: this.env, store: (command, at, coordinated) => this.store(command, at, coordinated), now: clock }, agentId, now);
  }

  // docs/protocol.md §Revoke: D1 refused a presence write for this agent. If it is
  // revoked there (the revoke's call to this channel failed), end its work here too.
  private async revokeIfRevokedInD1(agentId: string): Promise<void> {
    if (this.work.revokedAt() !== null) return;
    try {
      if (!(await isRevokedInD1(this.env.DB, agentId))) return;
    } catch (e) {
      console.error(`AgentChannel ${agentId}: could not check for a revoke in D1 (next sweep retries):`, e);
      return;
    }
    console.log(`AgentChannel ${agentId}: revoked in D1 without this channel being told; ending its work now`);
    await this.revoke(agentId);
  }

  // This agent's part of these deployments has ended (in D1 too): their coordinators may
  // start the next wave. Not awaited by the projection; a lost poke is repeated by the
  // coordinator's own alarm.
  private pokeCoordinators(deploymentIds: readonly string[]): void {
    for (const id of deploymentIds) {
      this.ctx.waitUntil(
        coordinatorOf(this.env, id)
          .poke(id)
          .catch((e: unknown) => console.error(`AgentChannel ${this.ledger.agentId()}: could not poke the coordinator of deployment ${id}:`, e)),
      );
    }
  }

  private offlineAfterMs(): number {
    return parseOfflineAfterMs(this.env.OUTPOST_OFFLINE_AFTER_MS, TIMING.offlineAfterMs);
  }

  private connected(): boolean {
    return greetedSockets(this.ctx.getWebSockets()).length > 0;
  }

  private announce(head: number): void {
    for (const ws of openSockets(this.ctx.getWebSockets())) send(ws, { type: "commands", head });
    for (const wake of [...this.pullWaiters]) wake();
  }

  private waitForCommand(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.pullWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.pullWaiters.add(done);
    });
  }
}
