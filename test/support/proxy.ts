// Test support: a real HTTP proxy between an agent and the local server, on
// 127.0.0.1, that records every exchange and can, request by request, answer in the
// server's place or cut the connection — before forwarding (the request is lost) or
// after (the answer is lost). WebSocket upgrades are tunnelled, refused (403) or
// blocked (held without an answer, as some proxies do).
import http from "node:http";
import net, { type AddressInfo, type Socket } from "node:net";

export type ProxiedRequest = { method: string; url: string; body: Buffer };
// What to do with one request (recorded as it arrived); undefined forwards it.
export type Intercept = (req: Exchange) => { answer: { status: number; body: unknown } } | { cut: "request" | "answer" } | undefined;

export type Exchange = ProxiedRequest & {
  at: number; // when the request arrived
  status: number | "cut" | null; // null while in flight
  answer: Buffer | null;
  endedAt: number | null;
};

export type UpgradeMode = "tunnel" | "refuse" | "block";

export type Proxy = {
  base: string;
  exchanges: Exchange[];
  upgrades: number;
  intercept: Intercept | null;
  inFlight(): Exchange[];
  close(): Promise<void>;
};

export async function startProxy(targetPort: number, opts: { upgrades?: UpgradeMode; intercept?: Intercept } = {}): Promise<Proxy> {
  const sockets = new Set<Socket>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => s.destroy());
  };
  const proxy: Proxy = {
    base: "",
    exchanges: [],
    upgrades: 0,
    intercept: opts.intercept ?? null,
    inFlight: () => proxy.exchanges.filter((x) => x.status === null),
    close: async () => {},
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const x: Exchange = { method: req.method!, url: req.url!, body: Buffer.concat(chunks), at: Date.now(), status: null, answer: null, endedAt: null };
      proxy.exchanges.push(x);
      const end = (status: number | "cut", answer: Buffer | null) => Object.assign(x, { status, answer, endedAt: Date.now() });
      const decision = proxy.intercept?.(x);
      if (decision && "answer" in decision) {
        const body = Buffer.from(JSON.stringify(decision.answer.body));
        res.writeHead(decision.answer.status, { "content-type": "application/json", "content-length": body.length });
        res.end(body);
        return void end(decision.answer.status, body);
      }
      if (decision?.cut === "request") {
        end("cut", null);
        return void req.socket.destroy();
      }
      // Without accept-encoding the server answers uncompressed, so answers can be read here.
      const { "accept-encoding": _encodings, ...headers } = req.headers;
      const up = http.request({ host: "127.0.0.1", port: targetPort, path: req.url, method: req.method, headers }, (upRes) => {
        const answer: Buffer[] = [];
        upRes.on("data", (c: Buffer) => answer.push(c));
        upRes.on("end", () => {
          const body = Buffer.concat(answer);
          if (decision?.cut === "answer") {
            end("cut", body);
            return void req.socket.destroy();
          }
          const answerHeaders = { ...upRes.headers, "content-length": String(body.length) };
          delete answerHeaders["transfer-encoding"];
          res.writeHead(upRes.statusCode!, answerHeaders);
          res.end(body);
          end(upRes.statusCode!, body);
        });
      });
      up.on("error", () => {
        if (!res.headersSent) res.writeHead(502);
        res.end();
        end(502, null);
      });
      up.end(x.body);
    });
  });
  server.on("connection", track);

  server.on("upgrade", (req, socket: Socket, head) => {
    proxy.upgrades++;
    track(socket);
    const mode = opts.upgrades ?? "tunnel";
    if (mode === "refuse") return void socket.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    if (mode === "block") return; // swallowed without an answer
    const upstream = net.connect(targetPort, "127.0.0.1", () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      upstream.write(lines.join("\r\n") + "\r\n\r\n");
      if (head.length) upstream.write(head);
      socket.pipe(upstream).pipe(socket);
    });
    track(upstream);
    upstream.on("error", () => socket.destroy());
    upstream.on("close", () => socket.destroy());
    socket.on("close", () => upstream.destroy());
  });

  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  proxy.base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.close = async () => {
    for (const s of sockets) s.destroy();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  };
  return proxy;
}
