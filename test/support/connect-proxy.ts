// Test support: a real HTTP CONNECT proxy on 127.0.0.1 (a free port), as a
// corporate proxy an agent must go through. Counts tunnels per target, remembers the
// local port of every connection it opens to a target (so a server can tell
// connections that came through it from any other), checks Basic credentials when
// given some, and can refuse every CONNECT with a status (407 by default). Anything
// but CONNECT (absolute-form requests) is answered 405 and counted: the agent must
// tunnel everything.
import http from "node:http";
import net, { type AddressInfo, type Socket } from "node:net";

export type ConnectProxyOptions = {
  auth?: { user: string; pass: string }; // required Basic credentials
  refuse?: number | null; // answer every CONNECT with this status
};

export type ConnectProxy = {
  port: number;
  url: string; // http://127.0.0.1:port, without credentials
  connects: Map<string, number>; // target host:port → CONNECTs tunnelled
  refused: Map<number, number>; // status → CONNECTs answered with it
  upstreamPorts: Set<number>; // local ports of the proxy's connections to targets
  plainRequests: string[]; // non-CONNECT requests ("METHOD url"), each answered 405
  refuse: number | null; // may be changed while running
  totalConnects(): number;
  close(): Promise<void>;
};

function count<K>(m: Map<K, number>, k: K): void {
  m.set(k, (m.get(k) ?? 0) + 1);
}

export async function startConnectProxy(opts: ConnectProxyOptions = {}): Promise<ConnectProxy> {
  const sockets = new Set<Socket>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => s.destroy()); // a peer's reset ends its tunnel, nothing more
  };
  const expected = opts.auth ? `Basic ${Buffer.from(`${opts.auth.user}:${opts.auth.pass}`).toString("base64")}` : null;

  const server = http.createServer((req, res) => {
    proxy.plainRequests.push(`${req.method} ${req.url}`);
    res.writeHead(405, { "content-type": "text/plain", connection: "close" });
    res.end("this test proxy only tunnels (CONNECT)\n");
  });
  server.on("connection", track);

  server.on("connect", (req: http.IncomingMessage, client: Socket, head: Buffer) => {
    track(client);
    const refuse = (status: number, extra = "") => {
      count(proxy.refused, status);
      client.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? "Refused"}\r\n${extra}Content-Length: 0\r\nConnection: close\r\n\r\n`);
    };
    if (proxy.refuse !== null) return refuse(proxy.refuse, proxy.refuse === 407 ? 'Proxy-Authenticate: Basic realm="test"\r\n' : "");
    if (expected !== null && req.headers["proxy-authorization"] !== expected) return refuse(407, 'Proxy-Authenticate: Basic realm="test"\r\n');
    const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(req.url ?? "");
    if (!m) return refuse(400);
    const upstream = net.connect({ host: m[1] ?? m[2], port: Number(m[3]) });
    track(upstream);
    upstream.on("connect", () => {
      proxy.upstreamPorts.add(upstream.localPort!);
      count(proxy.connects, req.url!);
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length > 0) upstream.write(head);
      client.pipe(upstream).pipe(client);
    });
    upstream.on("error", () => {
      if (!client.destroyed && client.bytesWritten === 0) refuse(502);
      else client.destroy();
    });
    upstream.on("close", () => client.destroy());
    client.on("close", () => upstream.destroy());
  });

  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  const proxy: ConnectProxy = {
    port,
    url: `http://127.0.0.1:${port}`,
    connects: new Map(),
    refused: new Map(),
    upstreamPorts: new Set(),
    plainRequests: [],
    refuse: opts.refuse ?? null,
    totalConnects: () => [...proxy.connects.values()].reduce((a, b) => a + b, 0),
    close: async () => {
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
  return proxy;
}
