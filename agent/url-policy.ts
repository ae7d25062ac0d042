// Which server URLs the agent accepts, and the URLs it derives from one.
// TLS everywhere except loopback, unless the operator says --insecure.

export type UrlCheck = { ok: true; url: URL } | { ok: false; error: string };

export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/^\[|\]$/g, "");
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  if (h === "::1" || h === "0:0:0:0:0:0:0:1") return true;
  if (/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h)) return true;
  if (/^::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h)) return true;
  return false;
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
