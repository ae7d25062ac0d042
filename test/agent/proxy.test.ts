// Outbound through an HTTP proxy (agent/README.md §Proxy), with real processes: the
// server is reached at https://localhost:<front> — a TLS front (certificate from a
// private CA made here with openssl, passed with --ca) before wrangler dev — and the
// agent is given a CONNECT proxy (test/support/connect-proxy.ts). The front records
// the peer port of every TCP connection it accepts and the request lines inside
// them, so the test can tell that registration, the WebSocket and the HTTPS calls
// each came through the proxy, and that nothing went around it.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { execFileSync, spawn } from "node:child_process";
import { readdirSync, readFileSync, statSync, writeFileSync, mkdirSync } from "node:fs";
import net, { type AddressInfo, type Socket } from "node:net";
import { join } from "node:path";
import tls from "node:tls";
import { startConnectProxy, type ConnectProxy } from "../support/connect-proxy.ts";
import { freePort, projectRoot, sleep, startProc, TestServer, waitFor, type Proc } from "../support/local-server.ts";

const bin = join(projectRoot, "agent/bin/outpost-agent.mjs");
const server = new TestServer();
const procs: Proc[] = [];
const proxies: ConnectProxy[] = [];
const PASS = "pr0xy-s3cret";
const AUTH = { user: "outpost", pass: PASS };
const secretForms = (user: string, pass: string) => [pass, Buffer.from(`${user}:${pass}`).toString("base64")];

type FrontConnection = { peerPort: number; requests: string[] };
type Front = { url: string; target: string; connections: FrontConnection[]; close(): Promise<void> };
let front: Front;
let caFile: string;

// A private CA and a certificate for localhost / 127.0.0.1 signed by it.
function makeCa(dir: string): { ca: string; key: string; cert: string } {
  mkdirSync(dir, { recursive: true });
  const f = (n: string) => join(dir, n);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const run = (args: string[]) => execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
  run(["req", "-x509", ...ec, "-keyout", f("ca.key"), "-out", f("ca.pem"), "-days", "2", "-subj", "/CN=Outpost proxy test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  run(["req", ...ec, "-keyout", f("server.key"), "-out", f("server.csr"), "-subj", "/CN=localhost"]);
  writeFileSync(f("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n");
  run(["x509", "-req", "-in", f("server.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("server.pem"), "-days", "2", "-extfile", f("ext.cnf")]);
  return { ca: f("ca.pem"), key: f("server.key"), cert: f("server.pem") };
}

// TLS in front of wrangler dev (which speaks plain http on 127.0.0.1:server.port).
async function startFront(key: string, cert: string): Promise<Front> {
  const sockets = new Set<Socket>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => s.destroy());
  };
  const connections: FrontConnection[] = [];
  const srv = tls.createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (client) => {
    track(client);
    const conn = connections.find((c) => c.peerPort === client.remotePort)!;
    client.on("data", (chunk: Buffer) => {
      for (const m of chunk.toString("latin1").matchAll(/(?:^|\r\n)(GET|POST|PUT|PATCH|DELETE) (\/[^\s?]*)\S* HTTP\/1\.1\r\n/g)) conn.requests.push(`${m[1]} ${m[2]}`);
    });
    const upstream = net.connect(server.port, "127.0.0.1");
    track(upstream);
    client.pipe(upstream).pipe(client);
    upstream.on("close", () => client.destroy());
    client.on("close", () => upstream.destroy());
  });
  // Every TCP connection, counted before (and whether or not) its TLS handshake succeeds.
  srv.on("connection", (s: Socket) => {
    track(s);
    connections.push({ peerPort: s.remotePort!, requests: [] });
  });
  srv.on("tlsClientError", () => undefined); // counted above; a failed handshake is the client's to report
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as AddressInfo).port;
  return {
    url: `https://localhost:${port}`,
    target: `localhost:${port}`,
    connections,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => srv.close(r));
    },
  };
}

beforeAll(async () => {
  const pki = makeCa(join(server.work, "pki"));
  caFile = pki.ca;
  await server.start();
  front = await startFront(pki.key, pki.cert);
});
// Each test's agents stop with it: an earlier agent still connecting would be counted
// as a connection around the next test's proxy.
afterEach(async () => {
  for (const p of procs.splice(0)) await p.stop();
});
afterAll(async () => {
  for (const p of procs) await p.stop();
  for (const p of proxies) await p.close();
  await front?.close();
  await server.stop();
});

async function proxy(opts: Parameters<typeof startConnectProxy>[0] = {}): Promise<ConnectProxy> {
  const p = await startConnectProxy(opts);
  proxies.push(p);
  return p;
}

// `outpost-agent register` against the https front, with --ca and the given extra args /
// environment. Its output is collected here (to the end of its pipes) and then written
// to the agent's log file, which `run` appends to.
async function register(name: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ home: string; code: number | null; log: string }> {
  const tok = await server.api("POST", "/api/v1/registration-tokens", {});
  expect(tok.status, tok.text).toBe(201);
  const home = join(server.work, "agents", name);
  mkdirSync(home, { recursive: true });
  const child = spawn(process.execPath, [bin, "register", "--server", front.url, "--ca", caFile, "--name", name, "--home", home, ...args], {
    env: { ...process.env, ...env, OUTPOST_REGISTRATION_TOKEN: tok.json.token },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let log = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  const timer = setTimeout(() => process.kill(-child.pid!, "SIGKILL"), 60_000); // its process group: register re-executes itself for --ca
  const code = await new Promise<number | null>((resolve) => child.on("close", (c) => resolve(c)));
  clearTimeout(timer);
  writeFileSync(join(server.work, `agent-${name}.log`), log);
  return { home, code, log };
}

function run(name: string, home: string, env: NodeJS.ProcessEnv = {}): Proc {
  const p = startProc(process.execPath, [bin, "run", "--home", home], { env, logFile: join(server.work, `agent-${name}.log`) });
  procs.push(p);
  return p;
}

// Every file under `dir` (recursively) but those named settings.json.
function filesBut(dir: string, skip: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...filesBut(p, skip));
    else if (e.isFile() && e.name !== skip) out.push(p);
  }
  return out;
}

// The front's connections since `from` that the proxy did not open. A connection the
// front just accepted may not be in the proxy's list yet (its connect callback runs a
// moment later), so this waits a little for them to agree before answering.
async function aroundProxy(from: number, px: ConnectProxy): Promise<FrontConnection[]> {
  const outside = () => front.connections.slice(from).filter((c) => !px.upstreamPorts.has(c.peerPort));
  const t0 = Date.now();
  while (outside().length > 0 && Date.now() - t0 < 3_000) await sleep(50);
  return outside();
}

const requestsSince = (from: number) => front.connections.slice(from).flatMap((c) => c.requests);
const noProxyEnv = { HTTPS_PROXY: "", https_proxy: "", HTTP_PROXY: "", http_proxy: "", NO_PROXY: "", no_proxy: "" };

describe("outbound through an HTTP proxy", () => {
  it("--proxy with credentials to an https server behind a private CA: registration, WebSocket and every request go through the proxy; the password is only in settings.json", async () => {
    const px = await proxy({ auth: AUTH });
    const from = front.connections.length;
    const proxyUrl = `http://${AUTH.user}:${PASS}@127.0.0.1:${px.port}`;
    const reg = await register("via-flag", ["--proxy", proxyUrl], noProxyEnv);
    expect(reg.code, reg.log).toBe(0);
    expect(reg.log).toContain(`registering with ${front.url} through proxy ${px.url} (--proxy, with Basic credentials)`);
    expect(px.connects.get(front.target)).toBe(1); // the registration's tunnel
    expect(requestsSince(from)).toEqual(["POST /agent/v1/register"]);

    const agent = run("via-flag", reg.home, noProxyEnv);
    await server.waitAgentOnline("via-flag");
    const dep = await server.api("POST", "/api/v1/deployments", { agents: ["via-flag"], steps: [{ name: "hello", type: "shell", command: "echo through-the-proxy" }] });
    expect(dep.status, dep.text).toBe(201);
    const done = await server.waitDeployment(dep.json.id);
    expect(done.steps[0]).toMatchObject({ status: "succeeded", exitCode: 0 });
    expect((await server.api("GET", `/api/v1/deployments/${dep.json.id}/steps/${done.steps[0].id}/log`)).text).toBe("through-the-proxy\n");

    const log = readFileSync(agent.logFile, "utf8");
    expect(log).toContain(`connections to ${front.url}: through proxy ${px.url} (settings.json proxy, with Basic credentials)`);
    // What went through the front: the calls of a whole deployment, each inside a tunnel.
    const requests = requestsSince(from);
    for (const r of ["POST /agent/v1/register", "GET /agent/v1/channel", "GET /agent/v1/commands", "POST /agent/v1/reports"]) expect(requests, r).toContain(r);
    expect(requests.some((r) => /^PUT \/agent\/v1\/steps\/[^/]+\/log$/.test(r)), requests.join(", ")).toBe(true);
    expect(await aroundProxy(from, px)).toEqual([]); // nothing around the proxy
    const conns = front.connections.slice(from);
    expect(conns.length).toBeGreaterThanOrEqual(3);
    expect(px.connects.get(front.target)).toBeGreaterThanOrEqual(conns.length);
    expect([...px.connects.keys()]).toEqual([front.target]);
    expect(px.plainRequests).toEqual([]);
    expect(px.refused.size).toBe(0);

    // The proxy's password: in settings.json (0600, in a 0700 home) and nowhere else.
    const settingsPath = join(reg.home, "settings.json");
    expect(JSON.parse(readFileSync(settingsPath, "utf8")).proxy).toBe(proxyUrl);
    expect(statSync(settingsPath).mode & 0o777).toBe(0o600);
    expect(statSync(reg.home).mode & 0o777).toBe(0o700);
    const files = filesBut(server.work, "settings.json");
    expect(files).toContain(agent.logFile);
    expect(files).toContain(join(reg.home, "journal.db"));
    for (const f of files) {
      const bytes = readFileSync(f);
      for (const s of secretForms(AUTH.user, PASS)) expect(bytes.includes(s), `${s} in ${f}`).toBe(false);
    }
  });

  it("without --proxy, HTTPS_PROXY from the environment carries registration and the running agent", async () => {
    const px = await proxy();
    const from = front.connections.length;
    const env = { ...noProxyEnv, HTTPS_PROXY: px.url };
    const reg = await register("via-env", [], env);
    expect(reg.code, reg.log).toBe(0);
    expect(reg.log).toContain(`through proxy ${px.url} (HTTPS_PROXY)`);
    expect(JSON.parse(readFileSync(join(reg.home, "settings.json"), "utf8")).proxy).toBeNull();
    const agent = run("via-env", reg.home, env);
    await server.waitAgentOnline("via-env");
    expect(readFileSync(agent.logFile, "utf8")).toContain(`connections to ${front.url}: through proxy ${px.url} (HTTPS_PROXY)`);
    expect(requestsSince(from)).toEqual(expect.arrayContaining(["POST /agent/v1/register", "GET /agent/v1/channel", "GET /agent/v1/commands"]));
    expect(await aroundProxy(from, px)).toEqual([]);
    expect(px.connects.get(front.target)).toBeGreaterThanOrEqual(3);
  });

  it("a proxy answering 407 (wrong password): register fails naming it, the running agent keeps retrying and logs the refusal, masked", async () => {
    const px = await proxy({ auth: AUTH });
    const from = front.connections.length;
    const wrong = "wr0ng-pa55";
    const bad = await register("refused", ["--proxy", `http://${AUTH.user}:${wrong}@127.0.0.1:${px.port}`], noProxyEnv);
    expect(bad.code).toBe(1);
    expect(bad.log).toContain(`proxy ${px.url}: refused CONNECT ${front.target}: HTTP 407`);

    // A registered agent whose proxy password changed: settings written as register would.
    const home = join(server.work, "agents", "refused-run");
    mkdirSync(home, { recursive: true, mode: 0o700 });
    const settings = { server: front.url, name: "refused-run", agentId: "a-refused", ca: caFile, proxy: `http://${AUTH.user}:${wrong}@127.0.0.1:${px.port}` };
    writeFileSync(join(home, "settings.json"), JSON.stringify(settings), { mode: 0o600 });
    writeFileSync(join(home, "credential.json"), JSON.stringify({ credential: "c" }), { mode: 0o600 });
    const agent = run("refused-run", home, noProxyEnv);
    const pullRefused = new RegExp(`WARN pull after=0 failed; retrying in \\d+ ms: GET ${front.url}/agent/v1/commands\\?after=0&wait=25: proxy ${px.url}: refused CONNECT ${front.target}: HTTP 407`);
    const channelRefused = `WARN channel error: proxy ${px.url}: refused CONNECT ${front.target}: HTTP 407`;
    await waitFor(async () => (px.refused.get(407) ?? 0) >= 6, 30_000, "the agent to try again and again");
    const log = readFileSync(agent.logFile, "utf8");
    expect(log).toMatch(pullRefused);
    expect(log).toContain(channelRefused);
    expect(agent.child.exitCode).toBeNull(); // retried, not fatal: the proxy may be fixed
    expect(front.connections.slice(from)).toEqual([]); // never around the proxy, not even when refused
    for (const s of secretForms(AUTH.user, wrong)) {
      expect(log).not.toContain(s);
      expect(bad.log).not.toContain(s);
    }
  });

  it("an https:// proxy URL is a usage error; an unusable HTTPS_PROXY stops the worker instead of letting it go around", async () => {
    const from = front.connections.length;
    const bad = await register("https-proxy", ["--proxy", `https://${AUTH.user}:${PASS}@127.0.0.1:3128`], noProxyEnv);
    expect(bad.code).toBe(2);
    expect(bad.log).toMatch(/invalid --proxy: an https:\/\/ proxy URL is not supported/);
    const badEnv = await register("https-env", [], { ...noProxyEnv, HTTPS_PROXY: "https://127.0.0.1:3128" });
    expect(badEnv.code).toBe(2);
    expect(badEnv.log).toContain("HTTPS_PROXY: an https:// proxy URL is not supported");

    const home = join(server.work, "agents", "bad-env-run");
    mkdirSync(home, { recursive: true, mode: 0o700 });
    writeFileSync(join(home, "settings.json"), JSON.stringify({ server: front.url, name: "bad-env-run", agentId: "a-bad", ca: caFile }), { mode: 0o600 });
    writeFileSync(join(home, "credential.json"), JSON.stringify({ credential: "c" }), { mode: 0o600 });
    const agent = run("bad-env-run", home, { ...noProxyEnv, https_proxy: `socks5://${AUTH.user}:${PASS}@127.0.0.1:1080` });
    const log = await waitFor(async () => {
      const text = readFileSync(agent.logFile, "utf8");
      return (text.match(/worker failed to start: https_proxy: the proxy URL must be http:\/\/host:port, not socks5:\/\//g) ?? []).length >= 2 ? text : null;
    }, 20_000, "the worker to refuse the proxy (and be restarted by the monitor)");
    expect(log).not.toContain(PASS);
    expect(front.connections.slice(from)).toEqual([]);
  });

  it("NO_PROXY naming the server: direct connections, the HTTPS_PROXY (here: nothing listening) never tried", async () => {
    const deadProxy = `http://127.0.0.1:${await freePort()}`;
    const from = front.connections.length;
    const env = { ...noProxyEnv, HTTPS_PROXY: deadProxy, NO_PROXY: `example.org, ${front.target}` };
    const reg = await register("bypass", [], env);
    expect(reg.code, reg.log).toBe(0);
    expect(reg.log).not.toContain("through proxy");
    const agent = run("bypass", reg.home, env);
    await server.waitAgentOnline("bypass");
    expect(readFileSync(agent.logFile, "utf8")).toContain(`connections to ${front.url}: direct (NO_PROXY matches localhost; HTTPS_PROXY not used)`);
    expect(requestsSince(from)).toEqual(expect.arrayContaining(["POST /agent/v1/register", "GET /agent/v1/channel"]));
    const proxied = new Set(proxies.flatMap((p) => [...p.upstreamPorts]));
    expect(front.connections.slice(from).every((c) => !proxied.has(c.peerPort))).toBe(true);
  });
});
