// One AgentChannel per agent: a thin transport shell. It holds the agent's
// hibernatable WebSocket, answers pulls and report batches from the ledger
// (ledger.ts), keeps presence, deadlines and revoke (work.ts) and projects into D1
// (projection.ts). Nothing that matters lives only in memory: the ledger and socket
// attachments survive hibernation; the in-memory fields below are per-request plumbing.
import { DurableObject } from "cloudflare:workers";
import { agentMessage, commandBody, pullQuery, reportsRequest, type CommandBody, type PullResponse, type ServerMessage } from "../schema/agent-api.ts";
import { describeZodError } from "../schema/errors.ts";
import { HEARTBEAT_PING, HEARTBEAT_PONG, LIMITS, TIMING } from "../schema/limits.ts";
import { deployCommand, markDispatched, undispatchedTargets } from "../worker/deployments/dispatch.ts";
import type { Env } from "../worker/env.ts";
import { errorResponse, json } from "../worker/http-errors.ts";
import { migrateLedger, openLedger, type Ledger } from "./ledger.ts";
import { projectJobs, setPresence } from "./projection.ts";
import { parseOfflineAfterMs, projectionBackoffMs, splitByLiveness } from "./rules.ts";
import { CLOSE, closeQuietly, send, WS_OPEN, type Attachment } from "./sockets.ts";
import { openWork, type Work } from "./work.ts";

export const AGENT_ID_HEADER = "X-Outpost-Agent-Id";

// A report batch waits this long for its projection before being answered; the
// projection itself carries on (and is retried by the alarm if it fails).
const PROJECTION_WAIT_MS = 2000;
// docs/protocol.md §Dispatch: a target still undispatched after this long is picked up by the DO itself.
export const SELF_DISPATCH_AFTER_MS = 5000;

export type ChannelStatus = { connected: boolean; head: number; acked: number; openCommands: number; pendingProjections: number };

export class AgentChannel extends DurableObject<Env> {
  private readonly ledger: Ledger;
  private readonly work: Work;
  private readonly pullWaiters = new Set<() => void>();
  private draining: Promise<void> | null = null;
  private drainAgain = false;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.ledger = openLedger(ctx.storage);
    this.work = openWork(ctx.storage);
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(HEARTBEAT_PING, HEARTBEAT_PONG));
    void ctx.blockConcurrencyWhile(() => migrateLedger(ctx.storage));
  }

  // ---- RPC from the Worker ----

  // Stores a command (idempotent by id) and tells the agent there is something new.
  async enqueue(agentId: string, body: CommandBody): Promise<{ seq: number; created: boolean }> {
    this.ledger.bindAgent(agentId);
    const result = this.store(commandBody.parse(body), Date.now());
    await this.scheduleNextAlarm();
    if (this.ledger.outboxStats().pending > 0) this.ctx.waitUntil(this.drain());
    return result;
  }

  // docs/protocol.md §Revoke: closes the sockets, releases long-polls, ends open work.
  async revoke(agentId: string): Promise<{ revokedAt: number }> {
    this.ledger.bindAgent(agentId);
    const revokedAt = this.work.revoke(Date.now());
    for (const ws of this.ctx.getWebSockets()) closeQuietly(ws, CLOSE.revoked, "agent revoked");
    for (const wake of [...this.pullWaiters]) wake();
    await this.drain();
    await this.scheduleNextAlarm();
    return { revokedAt };
  }

  // docs/protocol.md §Resync (the chaos suite compares this with the agent's journal).
  async status(agentId: string): Promise<ChannelStatus> {
    this.ledger.bindAgent(agentId);
    return {
      connected: this.greetedSockets().length > 0,
      head: this.ledger.head(),
      acked: this.ledger.ackedSeq(),
      openCommands: this.ledger.openCommands(),
      pendingProjections: this.ledger.outboxStats().pending,
    };
  }

  // Test hook (OUTPOST_TEST_HOOKS=1): resets the object the way an eviction does —
  // in-memory state and sockets gone, storage kept. The caller's RPC fails by design.
  async evict(): Promise<void> {
    this.ctx.abort("evicted by test hook");
  }

  // ---- HTTP from the Worker (already authenticated; the agent id is in AGENT_ID_HEADER) ----

  async fetch(request: Request): Promise<Response> {
    const agentId = request.headers.get(AGENT_ID_HEADER);
    if (!agentId) {
      console.error(`AgentChannel ${this.ctx.id}: request without ${AGENT_ID_HEADER}`);
      return errorResponse(500, "internal error");
    }
    this.ledger.bindAgent(agentId);
    if (this.work.revokedAt() !== null) return errorResponse(401, "this agent has been revoked");
    const url = new URL(request.url);
    switch (url.pathname) {
      case "/channel":
        return this.openChannel(request);
      case "/commands":
        return this.pull(url);
      case "/reports":
        return this.receiveReports(request, agentId);
      default:
        console.error(`AgentChannel ${agentId}: unknown internal path ${url.pathname}`);
        return errorResponse(404, "not found");
    }
  }

  private async openChannel(request: Request): Promise<Response> {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return errorResponse(426, "expected a WebSocket upgrade");
    }
    // A new connection means the agent reconnected: older sockets are stale.
    for (const old of this.ctx.getWebSockets()) closeQuietly(old, CLOSE.replaced, "replaced by a newer connection");
    const [client, server] = Object.values(new WebSocketPair());
    this.ctx.acceptWebSocket(server);
    const now = Date.now();
    server.serializeAttachment({ connectedAt: now, seenAt: now, hello: false, version: null } satisfies Attachment);
    await this.alarmNoLaterThan(now + this.offlineAfterMs());
    return new Response(null, { status: 101, webSocket: client });
  }

  private async pull(url: URL): Promise<Response> {
    const parsed = pullQuery.safeParse(Object.fromEntries(url.searchParams));
    if (!parsed.success) return errorResponse(400, `invalid query: ${describeZodError(parsed.error)}`);
    const { after, wait } = parsed.data;
    let head = this.ledger.head();
    if (after > head) return errorResponse(409, `after=${after} is beyond the last command (${head})`, { head });
    // Read before this pull acknowledges: a journal that lost commands says a lower
    // `after` than the ledger already saw, and the agent must learn which (§Commands).
    const acked = this.ledger.ackedSeq();
    this.ledger.ack(after);
    let commands = this.ledger.commandsAfter(after);
    if (commands.length === 0 && wait > 0) {
      await this.waitForCommand(wait * 1000);
      // A revoke releases the long-poll: the agent learns it at once.
      if (this.work.revokedAt() !== null) return errorResponse(401, "this agent has been revoked");
      head = this.ledger.head();
      commands = this.ledger.commandsAfter(after);
    }
    return json({ commands, head, acked } satisfies PullResponse);
  }

  private async receiveReports(request: Request, agentId: string): Promise<Response> {
    let raw: unknown;
    try {
      raw = await request.json();
    } catch (e) {
      return errorResponse(400, `body is not valid JSON: ${(e as Error).message}`);
    }
    const parsed = reportsRequest.safeParse(raw);
    if (!parsed.success) return errorResponse(400, `invalid body: ${describeZodError(parsed.error)}`);
    const { reports } = parsed.data;
    const foreign = this.ledger.foreignReports(agentId, reports);
    if (foreign.length > 0) {
      const steps = [...new Set(foreign.map((r) => r.stepId))].slice(0, 10).join(", ");
      return errorResponse(422, `reports name steps that are not this agent's: ${steps}`);
    }
    const { acked, applied } = this.ledger.applyReports(reports, Date.now());
    if (applied.length > 0) {
      const drained = this.drain();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([drained, new Promise<void>((r) => (timer = setTimeout(r, PROJECTION_WAIT_MS)))]);
      if (timer !== undefined) clearTimeout(timer);
    }
    return json({ acked });
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
    const hello = parsed.data;
    const agentId = this.ledger.agentId();
    if (!agentId) {
      console.error(`AgentChannel ${this.ctx.id}: hello on a channel that has no agent id`);
      return closeQuietly(ws, CLOSE.internal, "channel not initialised");
    }
    if (this.work.revokedAt() !== null) return closeQuietly(ws, CLOSE.revoked, "agent revoked");
    const now = Date.now();
    const att = ws.deserializeAttachment() as Attachment;
    ws.serializeAttachment({ ...att, seenAt: now, hello: true, version: hello.version } satisfies Attachment);
    this.work.wentOnline();
    send(ws, this.welcome(agentId, hello.lastSeq, hello.reports));
    try {
      await setPresence(this.env.DB, agentId, { status: "online", lastSeenAt: now, version: hello.version });
    } catch (e) {
      console.error(`AgentChannel ${agentId}: could not record presence online:`, e);
    }
    await this.dispatchFromD1(agentId, now);
    await this.scheduleNextAlarm();
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
    };
  }

  async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    // The hibernation API leaves the closing handshake to us.
    closeQuietly(ws, code === 1005 || code === 1006 || code === 1015 ? 1000 : code, reason);
    await this.markOfflineUnlessConnected(ws);
  }

  async webSocketError(ws: WebSocket, error: unknown): Promise<void> {
    console.error(`AgentChannel ${this.ledger.agentId()}: WebSocket error:`, error);
    closeQuietly(ws, CLOSE.internal, "socket error");
    await this.markOfflineUnlessConnected(ws);
  }

  // ---- Alarm: projection retries, presence sweep, self-dispatch, agent-lost deadlines ----

  async alarm(): Promise<void> {
    if (this.ledger.outboxStats().pending > 0) await this.drain();
    const now = Date.now();
    await this.sweepPresence(now);
    if (this.greetedSockets().length === 0 && this.work.takeDueAgentLost(now) > 0) await this.drain();
    await this.scheduleNextAlarm(true);
  }

  // ---- internals ----

  private store(command: CommandBody, now: number): { seq: number; created: boolean } {
    const result = this.ledger.enqueue(command, now);
    if (!result.created) return result;
    if (this.work.revokedAt() !== null) {
      // Dispatched after the revoke (a race): end it like the rest of the agent's work.
      this.work.revoke(now);
      return result;
    }
    if (this.greetedSockets().length === 0) this.work.commandWhileOffline(result.seq, now, command.agentLostAfterSeconds);
    this.announce(this.ledger.head());
    return result;
  }

  // docs/protocol.md §Dispatch: dispatch must not hang on the cron alone.
  private async dispatchFromD1(agentId: string, now: number): Promise<void> {
    let targets;
    try {
      targets = await undispatchedTargets(this.env, { agentId, createdBefore: now - SELF_DISPATCH_AFTER_MS }, 20);
    } catch (e) {
      console.error(`AgentChannel ${agentId}: looking up undispatched targets failed (next alarm retries):`, e);
      return;
    }
    for (const t of targets) {
      this.store(deployCommand(t), Date.now());
      try {
        await markDispatched(this.env, t, Date.now());
      } catch (e) {
        console.error(`AgentChannel ${agentId}: stored ${t.commandId} but could not mark it dispatched (harmless repeat later):`, e);
      }
    }
  }

  private offlineAfterMs(): number {
    return parseOfflineAfterMs(this.env.OUTPOST_OFFLINE_AFTER_MS, TIMING.offlineAfterMs);
  }

  private openSockets(except?: WebSocket): WebSocket[] {
    return this.ctx.getWebSockets().filter((ws) => ws !== except && ws.readyState === WS_OPEN);
  }

  private greetedSockets(except?: WebSocket): WebSocket[] {
    return this.openSockets(except).filter((ws) => (ws.deserializeAttachment() as Attachment | null)?.hello === true);
  }

  private announce(head: number): void {
    for (const ws of this.openSockets()) send(ws, { type: "commands", head });
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

  // One projection loop at a time; reports arriving meanwhile ride along.
  private drain(): Promise<void> {
    if (this.draining) {
      this.drainAgain = true;
      return this.draining;
    }
    this.draining = (async () => {
      try {
        do {
          this.drainAgain = false;
          if (!(await this.projectOutbox())) break;
        } while (this.drainAgain);
      } finally {
        this.draining = null;
      }
    })();
    return this.draining;
  }

  // Returns false when D1 refused: the rows stay, with the error, for the alarm to retry.
  private async projectOutbox(): Promise<boolean> {
    const agentId = this.ledger.agentId();
    if (!agentId) return true;
    for (;;) {
      const rows = this.ledger.outbox();
      if (rows.length === 0) return true;
      const ids = rows.map((r) => r.reportId);
      try {
        await projectJobs(this.env.DB, agentId, rows.map((r) => r.job), Date.now());
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        console.error(`AgentChannel ${agentId}: projecting ${ids.length} job(s) to D1 failed (will retry):`, e);
        this.ledger.markProjectionFailed(ids, message);
        await this.alarmNoLaterThan(Date.now() + projectionBackoffMs(this.ledger.outboxStats().maxAttempts));
        return false;
      }
      this.ledger.markProjected(ids);
    }
  }

  private async sweepPresence(now: number): Promise<void> {
    const agentId = this.ledger.agentId();
    if (!agentId) return;
    const sockets = this.openSockets().map((ws) => {
      const att = ws.deserializeAttachment() as Attachment;
      const pinged = this.ctx.getWebSocketAutoResponseTimestamp(ws)?.getTime() ?? 0;
      return { ws, hello: att.hello, lastSeenAt: Math.max(att.seenAt, pinged) };
    });
    const { alive, dead } = splitByLiveness(sockets, now, this.offlineAfterMs());
    for (const s of dead) closeQuietly(s.ws, CLOSE.noHeartbeat, "no heartbeat");
    const greeted = alive.filter((s) => s.hello);
    try {
      if (greeted.length > 0) {
        await setPresence(this.env.DB, agentId, { status: "online", lastSeenAt: Math.max(...greeted.map((s) => s.lastSeenAt)) });
        await this.dispatchFromD1(agentId, now);
      } else if (this.work.presence().online || dead.length > 0) {
        // Also covers sockets that vanished with an evicted object (no close event ever came).
        this.work.wentOffline(now);
        const seen = dead.length > 0 ? Math.max(...dead.map((s) => s.lastSeenAt)) : now;
        await setPresence(this.env.DB, agentId, { status: "offline", lastSeenAt: seen });
      }
    } catch (e) {
      console.error(`AgentChannel ${agentId}: presence sweep could not update D1:`, e);
    }
  }

  private async markOfflineUnlessConnected(closed: WebSocket): Promise<void> {
    const agentId = this.ledger.agentId();
    if (!agentId || this.greetedSockets(closed).length > 0) return;
    this.work.wentOffline(Date.now());
    await this.scheduleNextAlarm();
    try {
      await setPresence(this.env.DB, agentId, { status: "offline", lastSeenAt: Date.now() });
    } catch (e) {
      console.error(`AgentChannel ${agentId}: could not record presence offline:`, e);
    }
  }

  // From alarm(): sets the next wake-up. Elsewhere: only ever brings the alarm forward.
  private async scheduleNextAlarm(fromAlarm = false): Promise<void> {
    const now = Date.now();
    const due: number[] = [];
    const outbox = this.ledger.outboxStats();
    if (outbox.pending > 0) due.push(now + projectionBackoffMs(outbox.maxAttempts));
    if (this.openSockets().length > 0 || this.work.presence().online) due.push(now + this.offlineAfterMs());
    const deadline = this.work.nextDueAt();
    if (deadline !== null) due.push(Math.max(deadline, now));
    if (due.length === 0) return;
    if (fromAlarm) await this.ctx.storage.setAlarm(Math.min(...due));
    else await this.alarmNoLaterThan(Math.min(...due));
  }

  private async alarmNoLaterThan(at: number): Promise<void> {
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
  }
}
