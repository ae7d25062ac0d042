// docs/protocol.md §Reconnect (and §Commands): work still arrives when a proxy
// breaks WebSockets. The agent long-polls GET /agent/v1/commands?wait=25 through
// a real HTTP proxy that either refuses upgrades (403) or blocks them (accepts
// the connection and never answers), while plain HTTPS requests pass.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import http from "node:http";
import type { Socket, AddressInfo } from "node:net";
import { TestServer, type Proc } from "../support/local-server.ts";

type Mode = "refuse" | "block";
type Proxy = { server: http.Server; base: string; upgrades: number; held: Set<Socket> };

const server = new TestServer();
const proxies: Proxy[] = [];
const agents: Proc[] = [];

async function startProxy(mode: Mode): Promise<Proxy> {
  const p: Proxy = { server: http.createServer(), base: "", upgrades: 0, held: new Set() };
  p.server.on("request", (req, res) => {
    const up = http.request({ host: "127.0.0.1", port: server.port, path: req.url, method: req.method, headers: req.headers }, (upRes) => {
      res.writeHead(upRes.statusCode!, upRes.headers);
      upRes.pipe(res);
    });
    up.on("error", () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  });
  p.server.on("upgrade", (_req, socket: Socket) => {
    p.upgrades++;
    if (mode === "refuse") return void socket.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    p.held.add(socket); // blocked: swallowed without an answer, as some proxies do
    socket.on("close", () => p.held.delete(socket));
    socket.on("error", () => p.held.delete(socket));
  });
  await new Promise<void>((r) => p.server.listen(0, "127.0.0.1", r));
  p.base = `http://127.0.0.1:${(p.server.address() as AddressInfo).port}`;
  proxies.push(p);
  return p;
}

beforeAll(async () => {
  await server.start();
});

afterAll(async () => {
  for (const a of agents) await a.stop();
  for (const p of proxies) {
    for (const s of p.held) s.destroy();
    p.server.closeAllConnections();
    await new Promise((r) => p.server.close(r));
  }
  await server.stop();
});

describe("§Reconnect: without a WebSocket", () => {
  for (const mode of ["refuse", "block"] as const) {
    it(`receives and runs deployments by long-polling when the proxy ${mode}s WebSockets, and reports back`, async () => {
      const proxy = await startProxy(mode);
      const name = `lp-${mode}`;
      const home = await server.registerAgent(name, proxy.base);
      agents.push(server.startAgent(name, home));
      await new Promise((r) => setTimeout(r, 3_000)); // let the worker start and settle into long-polling
      for (let i = 0; i < 2; i++) {
        const t0 = Date.now();
        const created = await server.api("POST", "/api/v1/deployments", { agents: [name], steps: [{ name: "lp", type: "shell", command: "echo via-long-poll" }] });
        expect(created.status).toBe(201);
        const done = await server.waitDeployment(created.json.id, 60_000);
        expect(done.status).toBe("succeeded");
        const log = await server.api("GET", `/api/v1/deployments/${created.json.id}/steps/${done.steps[0].id}/log`);
        expect(log.text).toBe("via-long-poll\n");
        // a long-poll answers as soon as a command is stored, not at the end of its 25 s
        expect(Date.now() - t0).toBeLessThan(20_000);
      }
      expect(proxy.upgrades).toBeGreaterThan(0);
    });
  }
});
