// Work still arrives when a proxy breaks WebSockets: the agent long-polls
// GET /agent/v1/commands?wait=25 through a real HTTP proxy that refuses upgrades.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { TestServer, type Proc } from "../support/local-server.ts";

const server = new TestServer();
let proxy: http.Server;
let proxyBase: string;
let upgradesRefused = 0;
let agent: Proc | undefined;

beforeAll(async () => {
  await server.start();
  proxy = http.createServer((req, res) => {
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
  proxy.on("upgrade", (_req, socket) => {
    upgradesRefused++;
    socket.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  });
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
  proxyBase = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await agent?.stop();
  proxy?.closeAllConnections();
  await new Promise((r) => proxy?.close(r));
  await server.stop();
});

describe("without a WebSocket", () => {
  it("receives and runs deployments by long-polling, and reports back", async () => {
    const home = await server.registerAgent("lp-agent", proxyBase);
    agent = server.startAgent("lp-agent", home);
    await new Promise((r) => setTimeout(r, 3_000)); // let the worker start and settle into long-polling
    for (let i = 0; i < 2; i++) {
      const t0 = Date.now();
      const created = await server.api("POST", "/api/v1/deployments", { agents: ["lp-agent"], steps: [{ name: "lp", type: "shell", command: "echo via-long-poll" }] });
      expect(created.status).toBe(201);
      const done = await server.waitDeployment(created.json.id, 60_000);
      expect(done.status).toBe("succeeded");
      const log = await server.api("GET", `/api/v1/deployments/${created.json.id}/steps/${done.steps[0].id}/log`);
      expect(log.text).toBe("via-long-poll\n");
      // a long-poll answers as soon as a command is stored, not at the end of its 25 s
      expect(Date.now() - t0).toBeLessThan(20_000);
    }
    expect(upgradesRefused).toBeGreaterThan(0);
  });
});
