// The chaos suite's fault proxy against a local echo server.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import net from "node:net";
import { FaultProxy } from "./fault-proxy.ts";

let echo: net.Server;
let echoPort = 0;
const received: Buffer[] = []; // everything the echo server read
let proxy: FaultProxy;

beforeAll(async () => {
  echo = net.createServer((s) => {
    s.on("data", (d) => {
      received.push(d);
      s.write(d);
    });
    s.on("error", () => {});
  });
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", () => r()));
  echoPort = (echo.address() as net.AddressInfo).port;
});

afterAll(async () => {
  await new Promise<void>((r) => echo.close(() => r()));
});

async function newProxy(random?: () => number) {
  proxy = new FaultProxy({ targetPort: echoPort, random });
  await proxy.start();
  return proxy;
}

afterEach(async () => {
  await proxy?.close();
  received.length = 0;
});

type Client = { socket: net.Socket; data: () => string; closed: Promise<string>; waitFor(text: string, ms?: number): Promise<boolean> };

function connect(port: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    let buf = "";
    socket.on("data", (d) => (buf += d.toString()));
    const closed = new Promise<string>((r) => {
      let how = "end";
      socket.on("error", (e: NodeJS.ErrnoException) => (how = e.code ?? "error"));
      socket.on("close", () => r(how));
    });
    socket.once("connect", () =>
      resolve({
        socket,
        data: () => buf,
        closed,
        async waitFor(text, ms = 2_000) {
          const t0 = Date.now();
          while (Date.now() - t0 < ms) {
            if (buf.includes(text)) return true;
            await sleep(10);
          }
          return buf.includes(text);
        },
      }),
    );
    socket.once("error", reject);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const isClosed = (c: Client, ms = 1_000) => Promise.race([c.closed.then(() => true), sleep(ms).then(() => false)]);

describe("fault proxy", () => {
  it("forwards bytes both ways", async () => {
    const p = await newProxy();
    const c = await connect(p.port);
    c.socket.write("hello");
    expect(await c.waitFor("hello")).toBe(true);
    expect(p.openConnections).toBe(1);
    c.socket.destroy();
  });

  it("cuts every connection", async () => {
    const p = await newProxy();
    const cs = await Promise.all([1, 2, 3].map(() => connect(p.port)));
    for (const c of cs) c.socket.write("x");
    for (const c of cs) await c.waitFor("x");
    expect(p.cutAll()).toBe(3);
    for (const c of cs) expect(await isClosed(c)).toBe(true);
    expect(p.counts["cut-all"]).toBe(1);
    expect(p.stats.connectionsCut).toBe(3);
    // new connections still work
    const d = await connect(p.port);
    d.socket.write("again");
    expect(await d.waitFor("again")).toBe(true);
    d.socket.destroy();
  });

  it("cuts a share of the connections", async () => {
    let i = 0;
    const p = await newProxy(() => (i++ % 2 === 0 ? 0.1 : 0.9)); // every other connection
    const cs = await Promise.all([1, 2, 3, 4].map(() => connect(p.port)));
    for (const c of cs) c.socket.write("y");
    for (const c of cs) await c.waitFor("y");
    expect(p.cutShare(0.5)).toBe(2);
    const closed = await Promise.all(cs.map((c) => isClosed(c, 500)));
    expect(closed.filter(Boolean).length).toBe(2);
    expect(p.counts["cut-share"]).toBe(1);
    for (const c of cs) c.socket.destroy();
  });

  it("stalls both directions while keeping the sockets open, then resumes", async () => {
    const p = await newProxy();
    const c = await connect(p.port);
    c.socket.write("a");
    await c.waitFor("a");
    p.stall(600);
    c.socket.write("b");
    const late = await connect(p.port); // accepted during the stall: stalled too
    late.socket.write("c");
    await sleep(300);
    expect(c.data()).toBe("a");
    expect(late.data()).toBe("");
    expect(await isClosed(c, 10)).toBe(false);
    expect(await c.waitFor("ab", 2_000)).toBe(true);
    expect(await late.waitFor("c", 2_000)).toBe(true);
    expect(p.counts.stall).toBe(1);
    c.socket.destroy();
    late.socket.destroy();
  });

  it("half-opens a connection: one direction's bytes vanish, nothing closes, until cut", async () => {
    const p = await newProxy();
    const up = await connect(p.port);
    up.socket.write("1");
    await up.waitFor("1");
    expect(p.halfOpen(1, "up")).toBe(1);
    up.socket.write("lost-up");
    await sleep(200);
    expect(received.map(String).join("")).toBe("1");
    expect(await isClosed(up, 10)).toBe(false);

    const down = await connect(p.port);
    down.socket.write("2");
    await down.waitFor("2");
    p.halfOpen(1, "down");
    down.socket.write("lost-down");
    await sleep(200);
    expect(received.map(String).join("")).toContain("lost-down"); // reached the server…
    expect(down.data()).toBe("2"); // …but its echo never came back
    expect(p.stats.bytesDropped).toBeGreaterThan(0);

    p.heal(); // cuts half-open connections
    expect(await isClosed(up)).toBe(true);
    expect(await isClosed(down)).toBe(true);
    expect(p.counts["half-open"]).toBe(2);
  });

  it("refuses new connections during a blackhole, keeps the existing ones", async () => {
    const p = await newProxy();
    const before = await connect(p.port);
    p.blackhole(500);
    // reset right away: the connect itself fails, or the socket closes at once
    expect(await connect(p.port).then((c) => isClosed(c), () => true)).toBe(true);
    before.socket.write("still");
    expect(await before.waitFor("still")).toBe(true);
    await sleep(550);
    const after = await connect(p.port);
    after.socket.write("back");
    expect(await after.waitFor("back")).toBe(true);
    expect(p.counts.blackhole).toBe(1);
    expect(p.stats.refused).toBe(1);
    before.socket.destroy();
    after.socket.destroy();
  });

  it("blocks WebSocket upgrades but lets plain HTTP requests through", async () => {
    const p = await newProxy();
    const ws = await connect(p.port);
    ws.socket.write("GET /agent/v1/channel HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    await ws.waitFor("Upgrade: websocket");
    expect(p.webSocketsOpen).toBe(1);
    expect(p.blockWebSockets()).toBe(1); // the open one is cut
    expect(await isClosed(ws)).toBe(true);

    const ws2 = await connect(p.port);
    ws2.socket.write("GET /agent/v1/channel HTTP/1.1\r\nHost: x\r\nupgrade:websocket\r\n\r\n");
    expect(await isClosed(ws2)).toBe(true);
    expect(received.map(String).join("")).not.toContain("upgrade:websocket");

    const http = await connect(p.port);
    http.socket.write("GET /agent/v1/commands HTTP/1.1\r\nHost: x\r\n");
    await sleep(50);
    http.socket.write("\r\n");
    expect(await http.waitFor("GET /agent/v1/commands HTTP/1.1\r\nHost: x\r\n\r\n")).toBe(true);

    p.unblockWebSockets();
    const ws3 = await connect(p.port);
    ws3.socket.write("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n");
    expect(await ws3.waitFor("Upgrade: websocket")).toBe(true);
    expect(p.counts["ws-block"]).toBe(1);
    expect(p.stats.wsRejected).toBe(2);
    http.socket.destroy();
    ws3.socket.destroy();
  });

  it("closes the client when the target is down", async () => {
    proxy = new FaultProxy({ targetPort: 1 }); // nothing listens on port 1
    await proxy.start();
    const c = await connect(proxy.port);
    expect(await isClosed(c)).toBe(true);
  });
});
