// A fault-injecting TCP proxy on 127.0.0.1, put between agents (or API clients)
// and the server. It forwards bytes both ways and, on demand:
//   - cutAll / cutShare: resets all / a random share of the open connections;
//   - stall(ms): stops forwarding in both directions (sockets stay open), for
//     the connections open now and those accepted during the stall;
//   - halfOpen(share): silently drops the bytes of one direction of some
//     connections, without closing anything, until they are cut (heal/cut);
//   - blackhole(ms): resets every new connection for a while (refused);
//   - blockWebSockets(ms): resets connections whose request asks for
//     `Upgrade: websocket` (and the WebSockets open now), forcing clients onto
//     their long-poll fallback.
// Each injected fault is counted by kind (`counts`), its effect in `stats`.
import net from "node:net";

export type FaultKind = "cut-all" | "cut-share" | "stall" | "half-open" | "blackhole" | "ws-block";
type Direction = "up" | "down"; // up: client → target, down: target → client

const WS_UPGRADE = /\r\nupgrade:[ \t]*websocket/i;
const HEAD_END = "\r\n\r\n";
const SNIFF_MAX = 16 * 1024;

class Conn {
  readonly id: number;
  readonly client: net.Socket;
  readonly upstream: net.Socket;
  isWebSocket = false;
  sniffing = true;
  sniffed: Buffer[] = [];
  stalled = false;
  drop: Direction | null = null;
  closed = false;
  #backpressured = { up: false, down: false };

  constructor(id: number, client: net.Socket, upstream: net.Socket) {
    this.id = id;
    this.client = client;
    this.upstream = upstream;
  }

  source(dir: Direction) {
    return dir === "up" ? this.client : this.upstream;
  }
  sink(dir: Direction) {
    return dir === "up" ? this.upstream : this.client;
  }

  // Pauses or resumes reading on both sides according to stall and back-pressure.
  refreshFlow(): void {
    for (const dir of ["up", "down"] as const) {
      const src = this.source(dir);
      if (this.stalled || this.#backpressured[dir]) src.pause();
      else src.resume();
    }
  }

  write(dir: Direction, chunk: Buffer): void {
    if (this.closed) return;
    const sink = this.sink(dir);
    if (!sink.write(chunk)) {
      this.#backpressured[dir] = true;
      this.refreshFlow();
      sink.once("drain", () => {
        this.#backpressured[dir] = false;
        this.refreshFlow();
      });
    }
  }

  reset(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of [this.client, this.upstream]) {
      try {
        if (!s.destroyed) {
          // resetAndDestroy needs a connected socket; a still-connecting one is just destroyed
          if (s.readyState === "open" || s.readyState === "readOnly" || s.readyState === "writeOnly") s.resetAndDestroy();
          else s.destroy();
        }
      } catch {
        s.destroy();
      }
    }
  }
}

export type FaultProxyOptions = {
  targetPort: number | (() => number);
  targetHost?: string;
  port?: number; // 0 / unset: a free port, kept across restarts of the target
  random?: () => number;
};

export class FaultProxy {
  readonly counts: Record<FaultKind, number> = { "cut-all": 0, "cut-share": 0, stall: 0, "half-open": 0, blackhole: 0, "ws-block": 0 };
  readonly stats = { accepted: 0, connectionsCut: 0, refused: 0, wsRejected: 0, bytesDropped: 0, bytesForwarded: 0, stalledConnections: 0, halfOpened: 0 };
  port = 0;
  readonly #opts: FaultProxyOptions;
  readonly #random: () => number;
  readonly #conns = new Set<Conn>();
  #server: net.Server | null = null;
  #nextId = 1;
  #stallUntil = 0;
  #stallTimer: NodeJS.Timeout | null = null;
  #blackholeUntil = 0;
  #wsBlockUntil = 0;
  #wsBlockForever = false;

  constructor(opts: FaultProxyOptions) {
    this.#opts = opts;
    this.#random = opts.random ?? Math.random;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get openConnections(): number {
    return this.#conns.size;
  }

  get webSocketsOpen(): number {
    return [...this.#conns].filter((c) => c.isWebSocket).length;
  }

  get stalling(): boolean {
    return Date.now() < this.#stallUntil;
  }

  get blackholed(): boolean {
    return Date.now() < this.#blackholeUntil;
  }

  get blockingWebSockets(): boolean {
    return this.#wsBlockForever || Date.now() < this.#wsBlockUntil;
  }

  async start(): Promise<void> {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => this.#accept(s));
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.#opts.port ?? this.port ?? 0, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.port = (server.address() as net.AddressInfo).port;
  }

  async close(): Promise<void> {
    this.heal();
    for (const c of this.#conns) c.reset();
    this.#conns.clear();
    const s = this.#server;
    this.#server = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }

  // ---- faults ----

  cutAll(): number {
    this.counts["cut-all"]++;
    return this.#cut([...this.#conns]);
  }

  cutShare(share: number): number {
    this.counts["cut-share"]++;
    return this.#cut([...this.#conns].filter(() => this.#random() < share));
  }

  stall(ms: number): number {
    this.counts.stall++;
    this.#stallUntil = Math.max(this.#stallUntil, Date.now() + ms);
    for (const c of this.#conns) this.#setStalled(c, true);
    if (this.#stallTimer) clearTimeout(this.#stallTimer);
    this.#stallTimer = setTimeout(() => this.#endStall(), this.#stallUntil - Date.now());
    return this.#conns.size;
  }

  // Drops one direction (random per connection unless given) of a share of the open connections.
  halfOpen(share = 1, direction?: Direction): number {
    this.counts["half-open"]++;
    let n = 0;
    for (const c of this.#conns) {
      if (c.drop || this.#random() >= share) continue;
      c.drop = direction ?? (this.#random() < 0.5 ? "up" : "down");
      n++;
    }
    this.stats.halfOpened += n;
    return n;
  }

  // Cuts the half-open connections.
  cutHalfOpen(): number {
    return this.#cut([...this.#conns].filter((c) => c.drop !== null));
  }

  blackhole(ms: number): void {
    this.counts.blackhole++;
    this.#blackholeUntil = Math.max(this.#blackholeUntil, Date.now() + ms);
  }

  // ms = Infinity blocks until unblockWebSockets()/heal().
  blockWebSockets(ms = Infinity): number {
    this.counts["ws-block"]++;
    if (ms === Infinity) this.#wsBlockForever = true;
    else this.#wsBlockUntil = Math.max(this.#wsBlockUntil, Date.now() + ms);
    const open = [...this.#conns].filter((c) => c.isWebSocket);
    this.stats.wsRejected += open.length;
    return this.#cut(open);
  }

  unblockWebSockets(): void {
    this.#wsBlockForever = false;
    this.#wsBlockUntil = 0;
  }

  // Ends every fault: stall, blackhole and WebSocket block lifted, half-open connections cut.
  heal(): void {
    this.#blackholeUntil = 0;
    this.unblockWebSockets();
    this.#endStall();
    this.cutHalfOpen();
  }

  // ---- forwarding ----

  #accept(client: net.Socket): void {
    this.stats.accepted++;
    if (this.blackholed) {
      this.stats.refused++;
      client.resetAndDestroy();
      return;
    }
    const port = typeof this.#opts.targetPort === "function" ? this.#opts.targetPort() : this.#opts.targetPort;
    const upstream = net.connect({ host: this.#opts.targetHost ?? "127.0.0.1", port, allowHalfOpen: true });
    upstream.pause();
    const c = new Conn(this.#nextId++, client, upstream);
    this.#conns.add(c);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    if (this.stalling) this.#setStalled(c, true);

    const finish = () => {
      if (!c.closed) c.reset();
      this.#conns.delete(c);
    };
    for (const dir of ["up", "down"] as const) {
      const src = c.source(dir);
      const sink = c.sink(dir);
      src.on("data", (chunk: Buffer) => this.#onData(c, dir, chunk));
      src.on("end", () => {
        if (c.drop === dir) return; // half-open: the FIN is dropped too
        if (dir === "up" && c.sniffing) this.#flushSniffed(c);
        if (!sink.destroyed) sink.end();
      });
      src.on("error", () => finish());
      src.on("close", (hadError) => {
        if (hadError || c.closed) return finish();
        if (sink.destroyed) {
          c.closed = true;
          this.#conns.delete(c);
          return;
        }
        // orderly close: let the other side flush what it has, then close it
        sink.end();
        setTimeout(finish, 2_000).unref();
      });
    }
    upstream.on("connect", () => c.refreshFlow());
    c.refreshFlow();
  }

  #onData(c: Conn, dir: Direction, chunk: Buffer): void {
    if (c.closed) return;
    if (dir === "up") {
      if (c.sniffing) {
        c.sniffed.push(chunk);
        const head = Buffer.concat(c.sniffed);
        c.sniffed = [head];
        const text = head.toString("latin1");
        // only HTTP requests are inspected; anything else is forwarded at once
        if (!/^[A-Z]{1,10}( |$)/.test(text.slice(0, 11))) return this.#flushSniffed(c);
        const end = text.indexOf(HEAD_END);
        if (end < 0 && head.length < SNIFF_MAX) return; // wait for the whole request head
        if (WS_UPGRADE.test(end >= 0 ? text.slice(0, end + 2) : text)) c.isWebSocket = true;
        if (c.isWebSocket && this.blockingWebSockets) return this.#rejectWs(c);
        return this.#flushSniffed(c);
      }
      // a later request on a kept-alive connection may ask for an upgrade too
      if (!c.isWebSocket && WS_UPGRADE.test(chunk.toString("latin1"))) {
        c.isWebSocket = true;
        if (this.blockingWebSockets) return this.#rejectWs(c);
      }
    }
    if (c.drop === dir) {
      this.stats.bytesDropped += chunk.length;
      return;
    }
    this.stats.bytesForwarded += chunk.length;
    c.write(dir, chunk);
  }

  #flushSniffed(c: Conn): void {
    c.sniffing = false;
    const head = Buffer.concat(c.sniffed);
    c.sniffed = [];
    if (head.length === 0) return;
    if (c.drop === "up") {
      this.stats.bytesDropped += head.length;
      return;
    }
    this.stats.bytesForwarded += head.length;
    c.write("up", head);
  }

  #rejectWs(c: Conn): void {
    this.stats.wsRejected++;
    c.reset();
    this.#conns.delete(c);
  }

  #setStalled(c: Conn, stalled: boolean): void {
    if (stalled && !c.stalled) this.stats.stalledConnections++;
    c.stalled = stalled;
    if (!c.closed) c.refreshFlow();
  }

  #endStall(): void {
    this.#stallUntil = 0;
    if (this.#stallTimer) clearTimeout(this.#stallTimer);
    this.#stallTimer = null;
    for (const c of this.#conns) this.#setStalled(c, false);
  }

  #cut(conns: Conn[]): number {
    for (const c of conns) {
      c.reset();
      this.#conns.delete(c);
    }
    this.stats.connectionsCut += conns.length;
    return conns.length;
  }
}
