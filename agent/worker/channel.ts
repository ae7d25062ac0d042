// The WebSocket to /agent/v1/channel: notifications and presence only, never
// work. Sends `hello` first and hands the `welcome` answer, with the hello it
// answers, to the resync (docs/protocol.md §Resync); learns the server's head
// from `commands`; heartbeats with "ping" every 10 s (§Presence) and reconnects
// (full-jitter back-off 0.5 s → 30 s, §Reconnect) when the socket closes or
// stays silent for 30 s. Every connect attempt is logged (with the logger's
// ISO timestamp), so a herd of reconnecting agents can be measured. A close with
// 4003 ("agent revoked") or a 401 answer to the upgrade whose body carries code
// "agent-revoked" means the credential is dead (§Revoke): it never reconnects then,
// and says so through onRevoked. Any other refusal, a plain 401 included, is retried.
// Redirects are never followed (the URL policy would not see where they lead).
// Through a proxy (agent/proxy.ts) the socket is a CONNECT tunnel, TLS inside it.
import { trace } from "../trace.ts";
import type { IncomingMessage } from "node:http";
import type { createConnection } from "node:net";
import WebSocket from "ws";
import { HEARTBEAT_PING, HEARTBEAT_PONG, LIMITS, TIMING } from "../../schema/limits.ts";
import { agentMessage, CLOSE, isRevokedAnswer, serverMessage, type AgentMessage, type WelcomeMessage } from "../../schema/agent-api.ts";
import { DEFAULT_BACKOFF, type BackoffOptions } from "../backoff.ts";
import { describeCause } from "../errors.ts";
import type { Logger } from "../log.ts";
import { proxyPolicy, wsConnector, type ProxyPolicy } from "../proxy.ts";

export type Hello = Extract<AgentMessage, { type: "hello" }>;

// §Reconnect: a connection that stayed up this long gives the reconnect back-off a
// fresh start; one that keeps dropping sooner (a server that accepts and then closes)
// climbs to the cap like a refused one.
export const HEALTHY_CONNECTION_MS = 10_000;

// docs/protocol.md §Reconnect: the delay before the next connect attempt once a
// connection closed (or never opened: openedAt null). Full jitter below a cap that
// grows with the outage — half of how long the channel has been down, within
// 0.5 – 30 s — not with the number of attempts: after a short outage (a server restart,
// a deploy dropping every socket) every agent is back within about half its length
// instead of waiting out a cap that doubled meanwhile, and a long one still spaces the
// attempts out to 30 s. A connection that stayed up HEALTHY_CONNECTION_MS ends an
// outage; one dropped sooner (a server that accepts and closes) is part of it.
export class ReconnectDelay {
  #downSince: number | null = null;
  attempt = 0;
  readonly #random: () => number;
  readonly #opts: BackoffOptions;
  constructor(random: () => number = Math.random, opts: BackoffOptions = DEFAULT_BACKOFF) {
    this.#random = random;
    this.#opts = opts;
  }
  next(openedAt: number | null, closedAt: number): number {
    if (this.#downSince === null || (openedAt !== null && closedAt - openedAt >= HEALTHY_CONNECTION_MS)) {
      this.#downSince = closedAt;
      this.attempt = 0;
    }
    this.attempt++;
    const cap = Math.min(this.#opts.maxMs, Math.max(this.#opts.minMs, (closedAt - this.#downSince) / 2));
    return Math.floor(this.#random() * cap);
  }
}

const REFUSAL_BODY_CAP = 4 * 1024; // enough for {error, code}
const REFUSAL_BODY_WAIT_MS = 5_000;

// An upgrade the server answered with a plain HTTP response.
type Refusal = { status: number; revoked: boolean; location: string | null };

function describeRefusal(r: Refusal): string {
  if (r.status >= 300 && r.status < 400) {
    return `the server redirected the channel (HTTP ${r.status}) to ${r.location ?? "(no Location header)"}; the agent does not follow redirects: --server must name the final address`;
  }
  if (r.status === 401) return "the server refused this agent's credential on the channel (HTTP 401, not a revocation); retrying";
  return `the server refused the WebSocket upgrade: HTTP ${r.status}`;
}

// The body of a refused upgrade, as JSON if it is JSON; whatever it holds, never more than the cap.
function readRefusalBody(res: IncomingMessage): Promise<unknown> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString("utf8");
      try {
        resolve(JSON.parse(text));
      } catch {
        resolve(null);
      }
    };
    const timer = setTimeout(done, REFUSAL_BODY_WAIT_MS);
    res.on("data", (c: Buffer) => {
      size += c.length;
      if (size <= REFUSAL_BODY_CAP) chunks.push(c);
      else res.destroy();
    });
    res.on("end", done);
    res.on("close", done);
    res.on("error", done);
  });
}

export type ChannelDeps = {
  url: string;
  credential: string;
  log: Logger;
  hello: () => Promise<Hello>;
  onWelcome: (welcome: WelcomeMessage, hello: Hello) => void;
  onHead: (head: number) => void;
  onUp: () => void;
  onDown: () => void;
  onPong?: () => void; // a heartbeat was answered (an upgraded worker's health check waits for one)
  onRevoked: (why: string) => void;
  proxy?: ProxyPolicy; // default: the environment's (HTTPS_PROXY, NO_PROXY, …)
  heartbeatMs?: number;
  silenceMs?: number;
};

export class Channel {
  readonly #deps: ChannelDeps;
  readonly #reconnects = new ReconnectDelay();
  #ws: WebSocket | null = null;
  #greetedWs: WebSocket | null = null; // the connection whose hello was sent
  #up = false;
  #stopped = false;
  #reconnectTimer: NodeJS.Timeout | null = null;
  #lastError = "";
  // ws's createConnection: a tunnel through the proxy, or undefined for a direct socket.
  readonly #connector: ReturnType<typeof wsConnector>;

  constructor(deps: ChannelDeps) {
    this.#deps = deps;
    this.#connector = wsConnector(deps.proxy ?? proxyPolicy(null, process.env), deps.url);
  }

  get isUp(): boolean {
    return this.#up;
  }

  start(): void {
    this.#connect();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#ws?.close(1001, "agent stopping");
    setTimeout(() => this.#ws?.terminate(), 1_000).unref();
  }

  // A message after the hello on the current connection (a `status`); false when there
  // is none — the next connection's hello says the same.
  send(message: Exclude<AgentMessage, Hello>): boolean {
    const ws = this.#greetedWs;
    if (!ws || ws !== this.#ws || ws.readyState !== ws.OPEN) return false;
    ws.send(JSON.stringify(agentMessage.parse(message)));
    return true;
  }

  // Drops the current connection; the next one sends a fresh hello (and resyncs again).
  reconnect(): void {
    this.#ws?.terminate();
  }

  #connect(): void {
    const { url, credential, log } = this.#deps;
    const heartbeatMs = this.#deps.heartbeatMs ?? TIMING.heartbeatMs;
    const silenceMs = this.#deps.silenceMs ?? TIMING.offlineAfterMs;
    log.info(`channel connecting (attempt ${this.#reconnects.attempt + 1})`);
    const ws = new WebSocket(url, {
      headers: { authorization: `Bearer ${credential}` },
      handshakeTimeout: 15_000,
      maxPayload: LIMITS.wsMessageBytes,
      followRedirects: false,
      // ws's type is net.createConnection's; http.request also takes the callback form.
      ...(this.#connector ? { createConnection: this.#connector as unknown as typeof createConnection } : {}),
    });
    this.#ws = ws;
    let openedAt: number | null = null;
    let lastHeard = Date.now();
    let heartbeat: NodeJS.Timeout | null = null;
    let sentHello: Hello | null = null;
    let refusal: Refusal | null = null;

    // The upgrade answered with a plain HTTP response: keep what it says (a 401's body
    // tells a revocation from any other refusal), then drop it ('error' and 'close' follow).
    ws.on("unexpected-response", (_req, res) => {
      const status = res.statusCode ?? 0;
      const location = typeof res.headers.location === "string" ? res.headers.location : null;
      void readRefusalBody(res).then((body) => {
        refusal = { status, revoked: isRevokedAnswer(status, body), location };
        ws.terminate();
      });
    });

    // Every `ms`: a ping, unless the server has been silent too long (then reconnect).
    const beat = (ms: number) => {
      if (heartbeat) clearInterval(heartbeat);
      heartbeat = setInterval(() => {
        if (Date.now() - lastHeard > silenceMs) {
          log.warn(`channel silent for ${Math.round((Date.now() - lastHeard) / 1000)} s; reconnecting`);
          ws.terminate();
          return;
        }
        ws.send(HEARTBEAT_PING, (e) => e && log.warn("heartbeat send failed", e));
      }, ms);
    };

    ws.on("open", () => {
      openedAt = Date.now();
      lastHeard = openedAt;
      beat(heartbeatMs);
      this.#deps
        .hello()
        .then((m) => {
          sentHello = m;
          ws.send(JSON.stringify(agentMessage.parse(m)));
          this.#greetedWs = ws;
        })
        .catch((e) => {
          log.error("cannot send hello; reconnecting", e);
          ws.terminate();
        });
    });

    ws.on("message", (data, isBinary) => {
      lastHeard = Date.now();
      if (isBinary) return log.warn("ignoring a binary message on the channel");
      const text = data.toString();
      if (text === HEARTBEAT_PONG) return this.#deps.onPong?.();
      let msg: unknown;
      try {
        msg = JSON.parse(text);
      } catch {
        // Never the text itself: what the server sends may carry anything, command text included.
        return log.warn(`ignoring a non-JSON channel message (${text.length} characters)`);
      }
      const parsed = serverMessage.safeParse(msg);
      if (!parsed.success) return log.warn(`ignoring an unknown channel message (${text.length} characters)`);
      if (parsed.data.type === "welcome") {
        if (!this.#up) {
          this.#up = true;
          this.#lastError = "";
          log.info(`channel up (agent ${parsed.data.agentId}, server head ${parsed.data.head})`);
          this.#deps.onUp();
        }
        if (sentHello === null) return log.warn("ignoring a welcome that came before our hello");
        // The server says how often it wants a ping (docs/protocol.md §Presence).
        const told = parsed.data.heartbeatMs;
        if (told !== undefined && this.#deps.heartbeatMs === undefined && told !== heartbeatMs) beat(told);
        log.debug(`channel welcome head ${parsed.data.head}`);
        return this.#deps.onWelcome(parsed.data, sentHello);
      }
      log.debug(`channel ${parsed.data.type} head ${parsed.data.head}`);
      trace("notified", parsed.data.head);
      this.#deps.onHead(parsed.data.head);
    });

    ws.on("error", (e) => {
      // 'close' follows; log each distinct error once per outage
      const text = refusal === null ? describeCause(e) : describeRefusal(refusal);
      if (text !== this.#lastError) log.warn(`channel error: ${text}`);
      this.#lastError = text;
    });

    ws.on("close", (code, reasonBytes) => {
      if (heartbeat) clearInterval(heartbeat);
      const wasUp = this.#up;
      this.#up = false;
      if (this.#ws === ws) this.#ws = null;
      if (wasUp) {
        log.warn(`channel down (code ${code})`);
        this.#deps.onDown();
      }
      if (this.#stopped) return;
      const r = refusal as Refusal | null; // set in a callback: TypeScript cannot see it
      if (code === CLOSE.revoked || r?.revoked) {
        this.#stopped = true; // reconnecting with a dead credential cannot help
        const why = code === CLOSE.revoked ? `channel closed by the server: ${code} ${reasonBytes.toString() || "agent revoked"}` : "channel upgrade answered HTTP 401: agent revoked";
        return this.#deps.onRevoked(why);
      }
      const delay = this.#reconnects.next(openedAt, Date.now());
      this.#reconnectTimer = setTimeout(() => {
        this.#reconnectTimer = null;
        if (!this.#stopped) this.#connect();
      }, delay);
    });
  }
}
