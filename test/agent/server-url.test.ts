// The server URL policy as real `outpost-agent` processes (agent/url-policy.ts):
// plain http only to literal loopback or exactly "localhost", and redirects never
// followed — by `register`, by the worker's requests or by its WebSocket — so an
// https→http (or to-another-host) redirect can never slip past the policy. Small
// local HTTP servers stand in for a redirecting proxy and the address it points to.
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import http from "node:http";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { projectRoot, startProc, waitFor, type Proc } from "../support/local-server.ts";

const bin = join(projectRoot, "agent/bin/outpost-agent.mjs");
const work = mkdtempSync(join(tmpdir(), "outpost-url-"));
const servers: http.Server[] = [];
const procs: Proc[] = [];

type Local = { base: string; requests: string[] };
type Answer = { status: number; headers: Record<string, string>; body: string };
const sockets = new Set<Socket>();

// Every request and every upgrade attempt is counted and answered with `answer`.
async function local(answer: (url: string) => Answer): Promise<Local> {
  const l: Local = { base: "", requests: [] };
  const server = http.createServer((req, res) => {
    l.requests.push(`${req.method} ${req.url}`);
    const a = answer(req.url!);
    res.writeHead(a.status, a.headers);
    res.end(a.body);
  });
  server.on("upgrade", (req, socket: Socket) => {
    l.requests.push(`UPGRADE ${req.url}`);
    sockets.add(socket);
    const a = answer(req.url!);
    const head = Object.entries({ ...a.headers, "content-length": String(Buffer.byteLength(a.body)), connection: "close" }).map(([k, v]) => `${k}: ${v}\r\n`).join("");
    socket.end(`HTTP/1.1 ${a.status} ${http.STATUS_CODES[a.status]}\r\n${head}\r\n${a.body}`);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  l.base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return l;
}

async function redirectPair(): Promise<{ target: Local; redirector: Local }> {
  const target = await local(() => ({ status: 200, headers: { "content-type": "application/json" }, body: JSON.stringify({ agentId: "a1", credential: "c" }) }));
  const redirector = await local((url) => ({ status: 307, headers: { location: `${target.base}${url}` }, body: "" }));
  return { target, redirector };
}

afterEach(async () => {
  for (const p of procs.splice(0)) await p.stop();
  for (const s of sockets) s.destroy();
  sockets.clear();
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

// Not spawnSync: the local servers answering it live in this process.
function register(server: string): Promise<{ status: number | null; stderr: string }> {
  const home = mkdtempSync(join(work, "home-"));
  const child = spawn(process.execPath, [bin, "register", "--server", server, "--name", "url-agent", "--home", home], {
    env: { ...process.env, OUTPOST_REGISTRATION_TOKEN: "tok" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  return new Promise((resolve) => child.on("close", (status) => (clearTimeout(timer), resolve({ status, stderr }))));
}

describe("server URL policy", () => {
  it("register refuses a redirect: exits non-zero, names where it pointed, and the target gets no request", async () => {
    const { target, redirector } = await redirectPair();
    const r = await register(redirector.base);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`redirected (HTTP 307) to ${target.base}/agent/v1/register`);
    expect(r.stderr).toMatch(/--server .*must name the final address/);
    expect(redirector.requests).toEqual(["POST /agent/v1/register"]);
    expect(target.requests).toEqual([]);
  });

  it("a running agent follows no redirect either: its requests and its WebSocket never reach the target", async () => {
    const { target, redirector } = await redirectPair();
    const home = mkdtempSync(join(work, "home-"));
    writeFileSync(join(home, "settings.json"), JSON.stringify({ server: redirector.base, name: "url-agent", agentId: "a1" }), { mode: 0o600 });
    writeFileSync(join(home, "credential.json"), JSON.stringify({ credential: "c" }), { mode: 0o600 });
    const agent = startProc(process.execPath, [bin, "run", "--home", home], { logFile: join(work, "agent-redirect.log") });
    procs.push(agent);
    const pullRefused = /WARN pull after=0 failed; retrying in \d+ ms: GET \/agent\/v1\/commands\?after=0&wait=25: the server redirected \(HTTP 307\)/;
    const channelRefused = /WARN channel error: the server redirected the channel \(HTTP 307\) to http:\/\/127\.0\.0\.1:\d+\/agent\/v1\/channel/;
    const log = await waitFor(async () => {
      const text = readFileSync(agent.logFile, "utf8");
      return pullRefused.test(text) && channelRefused.test(text) ? text : null;
    }, 20_000, "both redirects in the agent's log");
    expect(log).toMatch(pullRefused);
    expect(redirector.requests).toContain("UPGRADE /agent/v1/channel");
    expect(redirector.requests.some((q) => q.startsWith("GET /agent/v1/commands"))).toBe(true);
    expect(target.requests).toEqual([]);
    expect(agent.child.exitCode).toBeNull(); // retried, not fatal: the proxy may be fixed
  });

  it("treats only literal loopback and exactly localhost as loopback: x.localhost needs --insecure for http", async () => {
    const r = await register("http://agent.localhost:9");
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/refusing plain http:\/\/ to agent\.localhost.*--insecure/);
  });
});
