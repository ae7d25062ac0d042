// Outbound through an HTTP proxy (agent/README.md §Proxy). The proxy comes from the
// agent's settings (`register --proxy`), else from HTTPS_PROXY / HTTP_PROXY /
// NO_PROXY. Every connection to the server — HTTPS requests and the WebSocket — is
// a CONNECT tunnel through it, with TLS end to end inside (the server's certificate
// checked with the server's hostname against the system roots and NODE_EXTRA_CA_CERTS,
// i.e. `--ca`): the proxy sees host:port and ciphertext only.
//
// Why our own CONNECT rather than the `undici` package's ProxyAgent: the WebSocket
// (`ws`) needs a tunnel anyway, and one implementation for both gives one NO_PROXY
// rule, one typed refusal (ProxyRefusedError naming the proxy's status) and one place
// that keeps the proxy's credentials out of every message. Node 22's fetch cannot be
// given a custom connector without undici's classes, so proxied requests go through
// node:http on a pooled tunnel agent (`tunnelFetch`), answered as a web Response so
// the API client's timeouts, capped bodies and redirect refusal stay as they are. Log
// chunks have a pool of their own (`bulkFetchFor`): tunnels of their own through the
// proxy, or a direct keep-alive http(s) agent.
import http from "node:http";
import https from "node:https";
import { isIP, isIPv6, type Socket } from "node:net";
import { Readable, type Duplex } from "node:stream";
import tls from "node:tls";
import { AgentError } from "./errors.ts";

export type Proxy = {
  host: string; // without brackets for IPv6
  port: number;
  authorization: string | null; // `Basic …` from the URL's user:pass; never logged
  display: string; // `http://host:port`: what logs and errors show, never the credentials
};

// Where the proxy for one target comes from: "settings.json" (register --proxy) or an
// environment variable's name.
export type ProxyRoute = { proxy: Proxy; source: string };

export type NoProxyRule = "*" | { host: string; port: number | null };

export type ProxyPolicy =
  | { kind: "fixed"; route: ProxyRoute } // settings.json: every connection, NO_PROXY ignored
  | { kind: "env"; https: ProxyRoute | null; http: ProxyRoute | null; noProxy: NoProxyRule[] };

export const DIRECT: ProxyPolicy = { kind: "env", https: null, http: null, noProxy: [] };

// A proxy setting we cannot use (bad URL, https://). Names its source, never the credentials.
export class ProxyConfigError extends AgentError {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super(message, context);
    this.name = "ProxyConfigError";
  }
}

// The tunnel could not be opened: proxy unreachable, closed, silent, or it refused.
export class ProxyTunnelError extends AgentError {
  constructor(proxy: Proxy, target: string, problem: string, cause?: unknown) {
    super(`proxy ${proxy.display}: ${problem}`, { proxy: proxy.display, target }, cause === undefined ? undefined : { cause });
    this.name = "ProxyTunnelError";
  }
}

// The proxy answered CONNECT with a non-2xx status (407: authentication required or wrong).
export class ProxyRefusedError extends ProxyTunnelError {
  readonly status: number;
  constructor(proxy: Proxy, target: string, status: number, statusText: string) {
    const hint = status === 407 ? " (proxy authentication required or refused: check the user and password of the proxy URL)" : "";
    super(proxy, target, `refused CONNECT ${target}: HTTP ${status}${statusText ? ` ${statusText}` : ""}${hint}`);
    this.name = "ProxyRefusedError";
    this.status = status;
  }
}

// For messages about a value we could not even parse: hide everything up to the last
// "@" (a password may itself hold "/" or "@" when not percent-encoded).
export function maskProxyText(raw: string): string {
  return raw.replace(/^([a-z][a-z0-9+.-]*:\/\/)?.*@/i, "$1***@");
}

export type ProxyCheck = { ok: true; proxy: Proxy } | { ok: false; error: string };

// `http://[user:pass@]host[:port]`; a value without a scheme is taken as http:// (as
// curl does with HTTPS_PROXY=proxy:3128). The proxy is spoken to in plain HTTP only.
export function parseProxyUrl(raw: string): ProxyCheck {
  const text = raw.trim();
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    return { ok: false, error: `not a valid proxy URL: ${JSON.stringify(maskProxyText(text))}` };
  }
  if (url.protocol === "https:") {
    return { ok: false, error: "an https:// proxy URL is not supported: the agent speaks plain HTTP to the proxy (the connection to the server inside its CONNECT tunnel is still TLS end to end); use http://host:port" };
  }
  if (url.protocol !== "http:") return { ok: false, error: `the proxy URL must be http://host:port, not ${url.protocol}//` };
  if (url.hostname === "") return { ok: false, error: "the proxy URL has no host" };
  if ((url.pathname !== "/" && url.pathname !== "") || url.search || url.hash) return { ok: false, error: "the proxy URL must be http://[user:pass@]host:port, without a path, query or fragment" };
  let authorization: string | null = null;
  if (url.username || url.password) {
    let user: string, pass: string;
    try {
      user = decodeURIComponent(url.username);
      pass = decodeURIComponent(url.password);
    } catch {
      return { ok: false, error: "the proxy URL's user or password is not valid percent-encoding" };
    }
    authorization = `Basic ${Buffer.from(`${user}:${pass}`, "utf8").toString("base64")}`;
  }
  const port = url.port === "" ? 80 : Number(url.port);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  return { ok: true, proxy: { host, port, authorization, display: `http://${isIPv6(host) ? `[${host}]` : host}:${port}` } };
}

// NO_PROXY: comma (or blank) separated hosts or domains with an optional port, or `*`.
// `.example.com` and `example.com` both match example.com and its subdomains.
export function parseNoProxy(raw: string | undefined): NoProxyRule[] {
  const rules: NoProxyRule[] = [];
  for (const item of (raw ?? "").split(/[\s,]+/)) {
    const entry = item.trim().toLowerCase();
    if (entry === "") continue;
    if (entry === "*") {
      rules.push("*");
      continue;
    }
    let host = entry;
    let port: number | null = null;
    const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
    if (bracketed) {
      host = bracketed[1];
      port = bracketed[2] === undefined ? null : Number(bracketed[2]);
    } else if (entry.split(":").length === 2) {
      const m = /^(.*):(\d+)$/.exec(entry);
      if (m) [host, port] = [m[1], Number(m[2])];
    }
    host = host.replace(/^\*?\./, "").replace(/\.$/, "");
    if (host !== "") rules.push({ host, port });
  }
  return rules;
}

function targetPort(target: URL): number {
  if (target.port !== "") return Number(target.port);
  return target.protocol === "https:" || target.protocol === "wss:" ? 443 : 80;
}

function bareHost(target: URL): string {
  return target.hostname.toLowerCase().replace(/^\[|\]$/g, "").replace(/\.$/, "");
}

export function matchesNoProxy(rules: NoProxyRule[], target: URL): boolean {
  const host = bareHost(target);
  const port = targetPort(target);
  return rules.some((r) => r === "*" || ((r.port === null || r.port === port) && (host === r.host || host.endsWith(`.${r.host}`))));
}

// The first non-empty of the lower-case and upper-case forms (lower-case wins, as in curl).
function envVar(env: NodeJS.ProcessEnv, upper: string): { name: string; value: string } | null {
  for (const name of [upper.toLowerCase(), upper]) {
    const value = env[name]?.trim();
    if (value) return { name, value };
  }
  return null;
}

function route(raw: string, source: string): ProxyRoute {
  const check = parseProxyUrl(raw);
  if (!check.ok) throw new ProxyConfigError(`${source}: ${check.error}`, { source });
  return { proxy: check.proxy, source };
}

// The settings' proxy wins over the environment entirely: with one, every connection
// goes through it (NO_PROXY included). Without, HTTPS_PROXY carries https:// and wss://
// (HTTP_PROXY when it is unset), HTTP_PROXY carries http:// and ws://, NO_PROXY exempts.
export function proxyPolicy(setting: string | null, env: NodeJS.ProcessEnv, settingSource = "settings.json proxy"): ProxyPolicy {
  if (setting !== null) return { kind: "fixed", route: route(setting, settingSource) };
  const httpVar = envVar(env, "HTTP_PROXY");
  const httpsVar = envVar(env, "HTTPS_PROXY");
  const http = httpVar ? route(httpVar.value, httpVar.name) : null;
  const https = httpsVar ? route(httpsVar.value, httpsVar.name) : http;
  const noProxy = envVar(env, "NO_PROXY");
  return { kind: "env", https, http, noProxy: parseNoProxy(noProxy?.value) };
}

// The proxy for a connection to `target`, or null for a direct one.
export function proxyFor(policy: ProxyPolicy, target: URL): ProxyRoute | null {
  if (policy.kind === "fixed") return policy.route;
  const secure = target.protocol === "https:" || target.protocol === "wss:";
  const r = secure ? policy.https : policy.http;
  if (r === null || matchesNoProxy(policy.noProxy, target)) return null;
  return r;
}

// One log line's worth: how connections to `target` go. Never the credentials.
export function describeRoute(policy: ProxyPolicy, target: URL): string {
  const r = proxyFor(policy, target);
  if (r !== null) return `through proxy ${r.proxy.display} (${r.source}${r.proxy.authorization ? ", with Basic credentials" : ""})`;
  const skipped = policy.kind === "env" ? (target.protocol === "https:" || target.protocol === "wss:" ? policy.https : policy.http) : null;
  return skipped ? `direct (NO_PROXY matches ${bareHost(target)}; ${skipped.source} not used)` : "direct (no proxy configured)";
}

export const TUNNEL_TIMEOUT_MS = 15_000;

function authority(host: string, port: number): string {
  return `${isIPv6(host) ? `[${host}]` : host}:${port}`;
}

// CONNECT host:port through the proxy; resolves with the raw tunnel once the proxy
// answered 2xx. Everything — reaching the proxy, its answer — within timeoutMs.
export function openTunnel(proxy: Proxy, host: string, port: number, timeoutMs = TUNNEL_TIMEOUT_MS): Promise<Socket> {
  const target = authority(host, port);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { host: target };
    if (proxy.authorization !== null) headers["proxy-authorization"] = proxy.authorization;
    const req = http.request({ host: proxy.host, port: proxy.port, method: "CONNECT", path: target, headers, agent: false, setHost: false });
    let settled = false;
    const fail = (e: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      reject(e);
    };
    const timer = setTimeout(() => fail(new ProxyTunnelError(proxy, target, `no answer to CONNECT ${target} within ${timeoutMs} ms`)), timeoutMs);
    // Node hands over the answer to a CONNECT, whatever its status, with the socket.
    req.on("connect", (res: http.IncomingMessage, socket: Socket, head: Buffer) => {
      const status = res.statusCode ?? 0;
      if (settled || status < 200 || status >= 300) {
        socket.destroy();
        return fail(new ProxyRefusedError(proxy, target, status, res.statusMessage ?? ""));
      }
      settled = true;
      clearTimeout(timer);
      if (head.length > 0) socket.unshift(head); // the server's first bytes, already read
      resolve(socket);
    });
    req.on("error", (e) => fail(new ProxyTunnelError(proxy, target, `CONNECT ${target} failed`, e)));
    req.end();
  });
}

// A connection to the server through the proxy: the tunnel, then (https, wss) TLS
// inside it, verified for the server's hostname as a direct connection would be.
export async function connectThrough(proxy: Proxy, host: string, port: number, secure: boolean, timeoutMs = TUNNEL_TIMEOUT_MS): Promise<Socket> {
  const t0 = Date.now();
  const tunnel = await openTunnel(proxy, host, port, timeoutMs);
  if (!secure) return tunnel;
  return new Promise((resolve, reject) => {
    // servername (SNI) must not be an IP address; host is what the certificate is checked against.
    const socket = tls.connect({ socket: tunnel, host, servername: isIP(host) ? undefined : host, ALPNProtocols: ["http/1.1"] });
    const timer = setTimeout(() => socket.destroy(new Error(`TLS handshake with ${authority(host, port)} through proxy ${proxy.display} took over ${timeoutMs} ms`)), Math.max(1, timeoutMs - (Date.now() - t0)));
    const onError = (e: Error) => {
      clearTimeout(timer);
      tunnel.destroy();
      reject(e);
    };
    socket.once("error", onError);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      socket.off("error", onError);
      resolve(socket);
    });
  });
}

type Oncreate = (err: Error | null, socket: Duplex) => void;

// ws's `createConnection` for `url` under `policy`, or undefined for a direct connection.
export function wsConnector(policy: ProxyPolicy, url: string, timeoutMs = TUNNEL_TIMEOUT_MS): ((options: unknown, oncreate: Oncreate) => undefined) | undefined {
  const target = new URL(url);
  const r = proxyFor(policy, target);
  if (r === null) return undefined;
  const secure = target.protocol === "wss:" || target.protocol === "https:";
  return (_options, oncreate) => {
    connectThrough(r.proxy, bareHost(target), targetPort(target), secure, timeoutMs).then(
      (s) => oncreate(null, s),
      (e: Error) => oncreate(e, undefined as unknown as Duplex),
    );
    return undefined;
  };
}

// Keep-alive pool of tunnelled connections to one server: a long-poll, reports and log
// chunks each take a connection, and idle ones are reused instead of paying CONNECT
// and a TLS handshake per request. Idle connections are dropped after a few seconds
// (or the server's Keep-Alive hint), as fetch does.
export class TunnelAgent extends http.Agent {
  readonly #proxy: Proxy;
  readonly #secure: boolean;
  constructor(proxy: Proxy, secure: boolean) {
    super({ keepAlive: true, timeout: 4_000 });
    this.#proxy = proxy;
    this.#secure = secure;
  }

  override createConnection(options: http.ClientRequestArgs, oncreate?: Oncreate): undefined {
    const host = String(options.host ?? options.hostname ?? "localhost");
    connectThrough(this.#proxy, host, Number(options.port), this.#secure).then(
      (s) => oncreate?.(null, s),
      (e: Error) => oncreate?.(e, undefined as unknown as Duplex),
    );
    return undefined;
  }
}

export type FetchInit = { method?: string; headers?: Record<string, string>; body?: string | Uint8Array<ArrayBuffer>; signal?: AbortSignal; redirect?: "manual" };
export type FetchLike = (url: string, init: FetchInit) => Promise<Response>;

const NULL_BODY_STATUSES = new Set([101, 204, 205, 304]);

// The subset of fetch the API client uses, over `agent`: never follows a redirect
// (node:http does not), aborts with `signal` (also while the body is read), and
// answers a web Response so bodies are read with the same cap as fetch's. `request`:
// node:http's for a tunnel (the agent makes the TLS itself) or plain http, node:https's
// for a direct https pool. A Uint8Array body is sent as it is, not copied.
export function tunnelFetch(agent: http.Agent, request: typeof http.request = http.request): FetchLike {
  return (raw, init) =>
    new Promise<Response>((resolve, reject) => {
      const url = new URL(raw);
      const body =
        init.body === undefined ? undefined : typeof init.body === "string" ? Buffer.from(init.body, "utf8") : Buffer.from(init.body.buffer, init.body.byteOffset, init.body.byteLength);
      const headers: Record<string, string> = { host: url.host, ...init.headers };
      if (body !== undefined) headers["content-length"] = String(body.length);
      const req = request({
        agent,
        host: bareHost(url),
        port: targetPort(url),
        path: url.pathname + url.search,
        method: init.method ?? "GET",
        headers,
        setHost: false,
        signal: init.signal,
      });
      req.on("error", reject);
      req.on("response", (res) => {
        const out = new Headers();
        for (const [k, v] of Object.entries(res.headers)) {
          for (const one of Array.isArray(v) ? v : v === undefined ? [] : [v]) out.append(k, one);
        }
        const status = res.statusCode ?? 0;
        if (NULL_BODY_STATUSES.has(status)) res.resume();
        try {
          resolve(new Response(NULL_BODY_STATUSES.has(status) ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), { status, statusText: res.statusMessage ?? "", headers: out }));
        } catch (e) {
          res.destroy();
          reject(e); // a status fetch cannot represent (outside 200–599)
        }
      });
      req.end(body);
    });
}

// How the API client reaches `server`: global fetch when direct, else a tunnel pool.
export function fetchFor(policy: ProxyPolicy, server: string): FetchLike {
  const target = new URL(server);
  const r = proxyFor(policy, target);
  if (r === null) return (url, init) => fetch(url, init);
  return tunnelFetch(new TunnelAgent(r.proxy, target.protocol === "https:"));
}

// A connection pool of its own for bulk transfers (log chunks, docs/protocol.md §Logs),
// so that reports, pulls and acknowledgements on the control connections (fetchFor)
// never wait behind megabytes of output — in the agent's sockets, in a proxy's
// per-connection queue, or behind a congested TCP window. Same route as fetchFor:
// through the same proxy (its own tunnels) or direct, keep-alive either way.
export function bulkFetchFor(policy: ProxyPolicy, server: string): FetchLike {
  const target = new URL(server);
  const secure = target.protocol === "https:";
  const r = proxyFor(policy, target);
  if (r !== null) return tunnelFetch(new TunnelAgent(r.proxy, secure));
  const options = { keepAlive: true, timeout: 4_000 };
  return secure ? tunnelFetch(new https.Agent(options), https.request) : tunnelFetch(new http.Agent(options));
}
