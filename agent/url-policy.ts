// Which server URLs the agent accepts, and the URLs it derives from one.
// TLS everywhere except loopback, unless the operator says --insecure. The agent
// never follows redirects (agent/worker/api-client.ts), so the policy checked here
// is the one every request meets.
import { isIPv4, isIPv6 } from "node:net";

export type UrlCheck = { ok: true; url: URL } | { ok: false; error: string };

// The eight 16-bit groups of an IPv6 address (an embedded dotted quad included), or null.
function ipv6Groups(h: string): number[] | null {
  if (!isIPv6(h)) return null;
  let text = h;
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (quad) {
    const b = quad[1].split(".").map(Number);
    text = text.slice(0, quad.index) + `${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`;
  }
  const [head, tail] = text.includes("::") ? text.split("::") : [text, null];
  const parse = (part: string) => (part === "" ? [] : part.split(":").map((g) => Number.parseInt(g, 16)));
  const left = parse(head);
  if (tail === null) return left;
  const right = parse(tail);
  return [...left, ...Array(8 - left.length - right.length).fill(0), ...right];
}

// Only what cannot leave the machine: literal loopback addresses (127.0.0.0/8, ::1,
// ::ffff:127.x.x.x) and exactly "localhost". Not "x.localhost": nothing guarantees
// every resolver keeps those on this machine.
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/^\[|\]$/g, "");
  if (h === "localhost") return true;
  if (isIPv4(h)) return h.split(".")[0] === "127";
  const g = ipv6Groups(h);
  if (g === null) return false;
  if (g.slice(0, 7).every((x) => x === 0) && g[7] === 1) return true; // ::1
  return g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff && g[6] >> 8 === 127; // ::ffff:127.x.x.x
}

export function checkServerUrl(raw: string, opts: { insecure: boolean }): UrlCheck {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, error: `not a valid URL: ${JSON.stringify(raw)}` };
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    return { ok: false, error: `the server URL must be https:// (or http:// to a loopback address), not ${url.protocol}//` };
  }
  if (url.username || url.password) return { ok: false, error: "the server URL must not contain a user name or password" };
  if (url.search || url.hash) return { ok: false, error: "the server URL must not contain a query or fragment" };
  if (url.protocol === "http:" && !isLoopbackHost(url.hostname) && !opts.insecure) {
    return {
      ok: false,
      error: `refusing plain http:// to ${url.hostname}: traffic would not be encrypted. Use https://, or pass --insecure if you really mean it`,
    };
  }
  return { ok: true, url };
}

// The canonical form stored in settings: no trailing slash.
export function normalizeServerUrl(url: URL): string {
  return url.origin + url.pathname.replace(/\/+$/, "");
}

export function apiUrl(server: string, path: string): string {
  return server.replace(/\/+$/, "") + path;
}

export function channelUrl(server: string): string {
  const u = new URL(apiUrl(server, "/agent/v1/channel"));
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  return u.toString();
}
