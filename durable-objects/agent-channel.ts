// One AgentChannel per agent: a thin transport shell. It holds the agent's
// hibernatable WebSocket, answers pulls and report batches from the ledger
// (ledger.ts) and projects applied reports into D1 (projection.ts). Nothing
// that matters lives only in memory: the ledger and socket attachments survive
// hibernation; the in-memory fields below are per-request plumbing.
import { DurableObject } from "cloudflare:workers";
import { agentMessage, commandBody, pullQuery, reportsRequest, type CommandBody, type ServerMessage } from "../schema/agent-api.ts";
import { describeZodError } from "../schema/errors.ts";
import { HEARTBEAT_PING, HEARTBEAT_PONG, LIMITS, TIMING } from "../schema/limits.ts";
import type { Env } from "../worker/env.ts";
import { errorResponse, json } from "../worker/http-errors.ts";
import { migrateLedger, openLedger, type Ledger } from "./ledger.ts";
import { projectReports, setPresence } from "./projection.ts";
import { parseOfflineAfterMs, projectionBackoffMs, splitByLiveness } from "./rules.ts";

export const AGENT_ID_HEADER = "X-Outpost-Agent-Id";

// Survives hibernation with the socket; ids and times only.
type Attachment = { connectedAt: number; seenAt: number; hello: boolean; version: string | null };

const WS_OPEN = 1;
const WS_CLOSED = 3;
const CLOSE_POLICY = 1008;
const CLOSE_TOO_BIG = 1009;
const CLOSE_NO_HEARTBEAT = 4000;
const CLOSE_REPLACED = 4001;
// A report batch waits this long for its projection before being answered; the
// projection itself carries on (and is retried by the alarm if it fails).
const PROJECTION_WAIT_MS = 2000;

export class AgentChannel extends DurableObject<Env> {
  private readonly ledger: Ledger;
  private readonly pullWaiters = new Set<() => void>();
  private draining: Promise<void> | null = null;
  private drainAgain = false;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.ledger = openLedger(ctx.storage);
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(HEARTBEAT_PING, HEARTBEAT_PONG));
    void ctx.blockConcurrencyWhile(() => migrateLedger(ctx.storage));
  }

  // ---- RPC from the Worker ----

  // Stores a command (idempotent by id) and tells the agent there is something new.
  async enqueue(agentId: string, body: CommandBody): Promise<{ seq: number; created: boolean }> {
    const command = commandBody.parse(body);
    this.ledger.bindAgent(agentId);
    const result = this.ledger.enqueue(command, Date.now());
    if (result.created) this.announce(this.ledger.head());
    return result;
  }

  // ---- HTTP from the Worker (already authenticated; the agent id is in AGENT_ID_HEADER) ----

  async fetch(request: Request): Promise<Response> {
    const agentId = request.headers.get(AGENT_ID_HEADER);
    if (!agentId) {
      console.error(`AgentChannel ${this.ctx.id}: request without ${AGENT_ID_HEADER}`);
      return errorResponse(500, "internal error");
    }
    this.ledger.bindAgent(agentId);
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
    for (const old of this.ctx.getWebSockets()) closeQuietly(old, CLOSE_REPLACED, "replaced by a newer connection");
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
    this.ledger.ack(after);
    let commands = this.ledger.commandsAfter(after);
    if (commands.length === 0 && wait > 0) {
      await this.waitForCommand(wait * 1000);
      head = this.ledger.head();
      commands = this.ledger.commandsAfter(after);
    }
    return json({ commands, head });
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
    if (typeof message !== "string") return closeQuietly(ws, CLOSE_POLICY, "binary messages are not accepted");
    if (message.length > LIMITS.wsMessageBytes) return closeQuietly(ws, CLOSE_TOO_BIG, "message too large");
    let value: unknown;
    try {
      value = JSON.parse(message);
    } catch {
      return closeQuietly(ws, CLOSE_POLICY, "message is not JSON");
    }
    const parsed = agentMessage.safeParse(value);
    if (!parsed.success) return closeQuietly(ws, CLOSE_POLICY, `invalid message: ${describeZodError(parsed.error)}`);
    const hello = parsed.data;
    const agentId = this.ledger.agentId();
    if (!agentId) {
      console.error(`AgentChannel ${this.ctx.id}: hello on a channel that has no agent id`);
      return closeQuietly(ws, 1011, "channel not initialised");
    }
    const now = Date.now();
    const att = ws.deserializeAttachment() as Attachment;
    ws.serializeAttachment({ ...att, seenAt: now, hello: true, version: hello.version } satisfies Attachment);
    send(ws, { type: "welcome", agentId, head: this.ledger.head() });
    try {
      await setPresence(this.env.DB, agentId, { status: "online", lastSeenAt: now, version: hello.version });
    } catch (e) {
      console.error(`AgentChannel ${agentId}: could not record presence online:`, e);
    }
  }

  async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    // The hibernation API leaves the closing handshake to us.
    closeQuietly(ws, code === 1005 || code === 1006 || code === 1015 ? 1000 : code, reason);
    await this.markOfflineUnlessConnected(ws);
  }

  async webSocketError(ws: WebSocket, error: unknown): Promise<void> {
    console.error(`AgentChannel ${this.ledger.agentId()}: WebSocket error:`, error);
    closeQuietly(ws, 1011, "socket error");
    await this.markOfflineUnlessConnected(ws);
  }

  // ---- Alarm: projection retries and presence sweep ----

  async alarm(): Promise<void> {
    if (this.ledger.outboxStats().pending > 0) await this.drain();
    await this.sweepPresence(Date.now());
    await this.scheduleNextAlarm();
  }

  // ---- internals ----

  private offlineAfterMs(): number {
    return parseOfflineAfterMs(this.env.OUTPOST_OFFLINE_AFTER_MS, TIMING.offlineAfterMs);
  }

  private openSockets(except?: WebSocket): WebSocket[] {
    return this.ctx.getWebSockets().filter((ws) => ws !== except && ws.readyState === WS_OPEN);
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
        await projectReports(this.env.DB, agentId, rows.map((r) => r.report), Date.now());
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        console.error(`AgentChannel ${agentId}: projecting ${ids.length} report(s) to D1 failed (will retry):`, e);
        this.ledger.markProjectionFailed(ids, message);
        await this.alarmNoLaterThan(Date.now() + projectionBackoffMs(this.ledger.outboxStats().maxAttempts));
        return false;
      }
      this.ledger.markProjected(ids);
    }
  }

  private async sweepPresence(now: number): Promise<void> {
    const agentId = this.ledger.agentId();
    const sockets = this.openSockets().map((ws) => {
      const att = ws.deserializeAttachment() as Attachment;
      const pinged = this.ctx.getWebSocketAutoResponseTimestamp(ws)?.getTime() ?? 0;
      return { ws, hello: att.hello, lastSeenAt: Math.max(att.seenAt, pinged) };
    });
    if (sockets.length === 0 || !agentId) return;
    const { alive, dead } = splitByLiveness(sockets, now, this.offlineAfterMs());
    for (const s of dead) closeQuietly(s.ws, CLOSE_NO_HEARTBEAT, "no heartbeat");
    const greeted = alive.filter((s) => s.hello);
    try {
      const db = this.env.DB;
      if (greeted.length > 0) {
        await setPresence(db, agentId, { status: "online", lastSeenAt: Math.max(...greeted.map((s) => s.lastSeenAt)) });
      } else if (dead.length > 0) {
        await setPresence(db, agentId, { status: "offline", lastSeenAt: Math.max(...dead.map((s) => s.lastSeenAt)) });
      }
    } catch (e) {
      console.error(`AgentChannel ${agentId}: presence sweep could not update D1:`, e);
    }
  }

  private async markOfflineUnlessConnected(closed: WebSocket): Promise<void> {
    const agentId = this.ledger.agentId();
    if (!agentId || this.openSockets(closed).length > 0) return;
    try {
      await setPresence(this.env.DB, agentId, { status: "offline", lastSeenAt: Date.now() });
    } catch (e) {
      console.error(`AgentChannel ${agentId}: could not record presence offline:`, e);
    }
  }

  private async scheduleNextAlarm(): Promise<void> {
    const now = Date.now();
    const due: number[] = [];
    const outbox = this.ledger.outboxStats();
    if (outbox.pending > 0) due.push(now + projectionBackoffMs(outbox.maxAttempts));
    if (this.openSockets().length > 0) due.push(now + this.offlineAfterMs());
    if (due.length > 0) await this.ctx.storage.setAlarm(Math.min(...due));
  }

  private async alarmNoLaterThan(at: number): Promise<void> {
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
  }
}

function send(ws: WebSocket, message: ServerMessage): void {
  try {
    ws.send(JSON.stringify(message));
  } catch (e) {
    // A notification lost costs latency only: the agent pulls on (re)connect.
    console.error("could not send to a WebSocket:", e);
  }
}

// Close codes 1005/1006/1015 are reserved; reasons are capped at 123 bytes; closing a dead socket throws.
function closeQuietly(ws: WebSocket, code: number, reason: string): void {
  let r = reason;
  while (new TextEncoder().encode(r).length > 123) r = r.slice(0, -1);
  if (ws.readyState === WS_CLOSED) return;
  try {
    ws.close(code, r);
  } catch (e) {
    console.error(`closing a WebSocket (${code} ${r}) failed:`, e);
  }
}
