// docs/protocol.md §Revoke: only the server's explicit revoked answer stops the
// agent. A proxy in front of the server that answers 401 on its own (no
// `code: "agent-revoked"`), to requests and to WebSocket upgrades alike, is
// retried with back-off: the agent keeps running, says the server refused its
// credential, and recovers once the proxy lets it through.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import http from "node:http";
import net, { type AddressInfo, type Socket } from "node:net";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { REVOKED_MESSAGE } from "../../agent/errors.ts";
import { TestServer, waitFor, type Proc } from "../support/local-server.ts";

const server = new TestServer();
const agents: Proc[] = [];
const PROXY_401 = JSON.stringify({ error: "proxy authentication required" });

// Refuses with a plain 401 while `refusing`, else forwards requests and tunnels upgrades.
type Proxy = { base: string; refusing: boolean; refused: { requests: number; upgrades: number }; close(): Promise<void> };

async function startProxy(): Promise<Proxy> {
  const sockets = new Set<Socket>();
  const http401 = `HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: ${PROXY_401.length}\r\nconnection: close\r\n\r\n${PROXY_401}`;
  const proxy: Proxy = { base: "", refusing: true, refused: { requests: 0, upgrades: 0 }, close: async () => {} };
  const s = http.createServer((req, res) => {
    if (proxy.refusing) {
      proxy.refused.requests++;
      res.writeHead(401, { "content-type": "application/json" });
      return void res.end(PROXY_401);
    }
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
  s.on("upgrade", (req, socket: Socket, head) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    if (proxy.refusing) {
      proxy.refused.upgrades++;
      return void socket.end(http401);
    }
    const upstream = net.connect(server.port, "127.0.0.1", () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      upstream.write(lines.join("\r\n") + "\r\n\r\n");
      if (head.length) upstream.write(head);
      socket.pipe(upstream).pipe(socket);
    });
    sockets.add(upstream);
    upstream.on("close", () => sockets.delete(upstream));
    upstream.on("error", () => socket.destroy());
  });
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  proxy.base = `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  proxy.close = async () => {
    for (const x of sockets) x.destroy();
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  };
  return proxy;
}

let proxy: Proxy;
beforeAll(async () => {
  await server.start();
  proxy = await startProxy();
});
afterAll(async () => {
  for (const a of agents) await a.stop();
  await proxy?.close();
  await server.stop();
});

describe("§Revoke: a 401 that is not a revocation", () => {
  it("a proxy answering a plain 401 for a while: the agent keeps running, says the credential was refused, and recovers when the proxy forwards", async () => {
    const name = "plain-401";
    const home = await server.registerAgent(name);
    const settingsPath = join(home, "settings.json");
    writeFileSync(settingsPath, JSON.stringify({ ...JSON.parse(readFileSync(settingsPath, "utf8")), server: proxy.base }), { mode: 0o600 });
    const agent = server.startAgent(name, home);
    agents.push(agent);

    // Refused more than once each way: retried, not given up.
    await waitFor(async () => proxy.refused.requests >= 2 && proxy.refused.upgrades >= 2, 30_000, "the proxy to refuse requests and upgrades again");
    expect(agent.child.exitCode).toBeNull();
    let log = readFileSync(agent.logFile, "utf8");
    expect(log).toMatch(/WARN pull after=0 failed; retrying in \d+ ms: GET .*HTTP 401: proxy authentication required \(the server refused this agent's credential without saying it is revoked: retrying\)/);
    expect(log).toMatch(/WARN channel error: the server refused this agent's credential on the channel \(HTTP 401, not a revocation\); retrying/);

    proxy.refusing = false;
    await server.waitAgentOnline(name, 60_000);
    const r = await server.api("POST", "/api/v1/deployments", { agents: [name], steps: [{ name: "after", type: "shell", command: "echo through-the-proxy" }] });
    expect(r.status, r.text).toBe(201);
    const done = await server.waitDeployment(r.json.id, 60_000);
    expect(done.status).toBe("succeeded");
    expect((await server.api("GET", `/api/v1/deployments/${r.json.id}/steps/${done.steps[0].id}/log`)).text).toBe("through-the-proxy\n");

    log = readFileSync(agent.logFile, "utf8");
    expect(log).not.toContain(REVOKED_MESSAGE);
    expect(log.match(/worker started, pid/g)).toHaveLength(1); // the worker never exited
    expect(agent.child.exitCode).toBeNull();
  });
});
