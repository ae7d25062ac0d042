import { describe, expect, it } from "vitest";
import { describeRoute, DIRECT, maskProxyText, matchesNoProxy, parseNoProxy, parseProxyUrl, ProxyConfigError, proxyFor, proxyPolicy, ProxyRefusedError } from "./proxy.ts";

const u = (s: string) => new URL(s);

describe("proxy URL", () => {
  it("takes http://[user:pass@]host[:port], with Basic credentials decoded from the URL", () => {
    const p = parseProxyUrl("http://al%40ice:p%3Ass@proxy.corp:3128");
    expect(p).toEqual({ ok: true, proxy: { host: "proxy.corp", port: 3128, authorization: `Basic ${Buffer.from("al@ice:p:ss").toString("base64")}`, display: "http://proxy.corp:3128" } });
    expect(parseProxyUrl("http://proxy.corp")).toMatchObject({ ok: true, proxy: { port: 80, authorization: null, display: "http://proxy.corp:80" } });
    expect(parseProxyUrl("proxy.corp:8080")).toMatchObject({ ok: true, proxy: { host: "proxy.corp", port: 8080 } }); // curl's scheme-less form
    expect(parseProxyUrl("http://[::1]:3128/")).toMatchObject({ ok: true, proxy: { host: "::1", port: 3128, display: "http://[::1]:3128" } });
    expect(parseProxyUrl("http://user@p:1")).toMatchObject({ ok: true, proxy: { authorization: `Basic ${Buffer.from("user:").toString("base64")}` } });
  });

  it("refuses https:// proxies (saying why), other schemes, paths, and never repeats the credentials", () => {
    const https = parseProxyUrl("https://u:s3cret@proxy.corp:443");
    expect(https).toMatchObject({ ok: false, error: expect.stringMatching(/https:\/\/ proxy URL is not supported.*plain HTTP to the proxy/) });
    for (const bad of ["socks5://u:s3cret@p:1080", "http://u:s3cret@p:3128/x", "http://u:s3cret@p:3128?q", "http://u:s3cret@p:70000", "http://u:%zz@p:1", "http://"]) {
      const r = parseProxyUrl(bad);
      expect(r.ok, bad).toBe(false);
      expect(JSON.stringify(r)).not.toContain("s3cret");
    }
    expect(maskProxyText("http://u:s3cret@p:70000")).toBe("http://***@p:70000");
    expect(maskProxyText("u:s3cret@p:70000")).toBe("***@p:70000");
    expect(maskProxyText("http://u:s3/cr@et@p:1")).toBe("http://***@p:1");
    expect(JSON.stringify(parseProxyUrl("http://u:s3/cr@et@p:1"))).not.toMatch(/s3|cr@et/);
    expect(maskProxyText("http://p:70000")).toBe("http://p:70000");
  });
});

describe("NO_PROXY", () => {
  const rules = parseNoProxy(" .example.com, internal.corp:8443 ,10.0.0.7,[::1]:9000, ,*.wild.org\tlocalhost");
  it("parses hosts, domains, ports, IPv6 and blanks", () => {
    expect(rules).toEqual([
      { host: "example.com", port: null },
      { host: "internal.corp", port: 8443 },
      { host: "10.0.0.7", port: null },
      { host: "::1", port: 9000 },
      { host: "wild.org", port: null },
      { host: "localhost", port: null },
    ]);
    expect(parseNoProxy("*")).toEqual(["*"]);
    expect(parseNoProxy(undefined)).toEqual([]);
  });

  it("matches a domain and its subdomains (with or without the leading dot), ports when given", () => {
    expect(matchesNoProxy(rules, u("https://example.com/x"))).toBe(true);
    expect(matchesNoProxy(rules, u("https://a.b.example.com"))).toBe(true);
    expect(matchesNoProxy(rules, u("https://notexample.com"))).toBe(false);
    expect(matchesNoProxy(parseNoProxy("example.com"), u("https://api.example.com"))).toBe(true);
    expect(matchesNoProxy(rules, u("https://internal.corp:8443"))).toBe(true);
    expect(matchesNoProxy(rules, u("https://internal.corp"))).toBe(false); // port 443 ≠ 8443
    expect(matchesNoProxy(rules, u("http://[::1]:9000"))).toBe(true);
    expect(matchesNoProxy(rules, u("http://[::1]:9001"))).toBe(false);
    expect(matchesNoProxy(rules, u("http://10.0.0.7:1"))).toBe(true);
    expect(matchesNoProxy(rules, u("https://x.wild.org"))).toBe(true);
    expect(matchesNoProxy(rules, u("https://LOCALHOST.:3"))).toBe(true);
    expect(matchesNoProxy(parseNoProxy("*"), u("https://anything"))).toBe(true);
  });
});

describe("proxy policy", () => {
  const env = { HTTPS_PROXY: "http://secure:3128", http_proxy: "http://plain:3128", HTTP_PROXY: "http://ignored:1", NO_PROXY: ".corp" };

  it("a settings proxy carries every connection, whatever the environment says (NO_PROXY included)", () => {
    const p = proxyPolicy("http://u:p@fixed:8080", env);
    for (const t of ["https://s.example", "wss://s.example/agent/v1/channel", "http://127.0.0.1:8787", "https://x.corp"]) {
      expect(proxyFor(p, u(t))).toMatchObject({ proxy: { host: "fixed", port: 8080 }, source: "settings.json proxy" });
    }
    expect(describeRoute(p, u("https://s.example"))).toBe("through proxy http://fixed:8080 (settings.json proxy, with Basic credentials)");
    expect(describeRoute(p, u("https://s.example"))).not.toContain(Buffer.from("u:p").toString("base64"));
  });

  it("without one: HTTPS_PROXY for https/wss, HTTP_PROXY (lower case first) for http/ws, NO_PROXY exempts", () => {
    const p = proxyPolicy(null, env);
    expect(proxyFor(p, u("https://s.example"))).toMatchObject({ proxy: { host: "secure" }, source: "HTTPS_PROXY" });
    expect(proxyFor(p, u("wss://s.example"))).toMatchObject({ proxy: { host: "secure" } });
    expect(proxyFor(p, u("http://127.0.0.1:1"))).toMatchObject({ proxy: { host: "plain" }, source: "http_proxy" });
    expect(proxyFor(p, u("ws://127.0.0.1:1"))).toMatchObject({ proxy: { host: "plain" } });
    expect(proxyFor(p, u("https://deploy.corp"))).toBeNull();
    expect(describeRoute(p, u("https://deploy.corp"))).toBe("direct (NO_PROXY matches deploy.corp; HTTPS_PROXY not used)");
  });

  it("https falls back to HTTP_PROXY; nothing set or empty values mean direct", () => {
    expect(proxyFor(proxyPolicy(null, { HTTP_PROXY: "http://only:1" }), u("https://s"))).toMatchObject({ proxy: { host: "only" }, source: "HTTP_PROXY" });
    expect(proxyFor(proxyPolicy(null, { HTTPS_PROXY: "http://s:1" }), u("http://127.0.0.1"))).toBeNull();
    expect(proxyFor(proxyPolicy(null, { https_proxy: "", HTTPS_PROXY: " " }), u("https://s"))).toBeNull();
    expect(proxyFor(DIRECT, u("https://s"))).toBeNull();
    expect(describeRoute(proxyPolicy(null, {}), u("https://s"))).toBe("direct (no proxy configured)");
  });

  it("an unusable proxy is a ProxyConfigError naming its source, never a silent direct connection", () => {
    expect(() => proxyPolicy(null, { HTTPS_PROXY: "https://u:s3cret@p:443" })).toThrow(ProxyConfigError);
    expect(() => proxyPolicy(null, { HTTPS_PROXY: "https://u:s3cret@p:443" })).toThrow(/^HTTPS_PROXY: an https:\/\/ proxy URL is not supported/);
    expect(() => proxyPolicy("ftp://p:1", {}, "--proxy")).toThrow(/^--proxy: the proxy URL must be http/);
    const e = (() => { try { proxyPolicy("http://u:s3cret@p:99999", {}); } catch (x) { return x as Error; } })();
    expect(e?.message).toMatch(/^settings\.json proxy: not a valid proxy URL/);
    expect(e?.message).not.toContain("s3cret");
  });

  it("a refused CONNECT names the proxy (masked), the target and the status", () => {
    const check = parseProxyUrl("http://u:s3cret@p:3128");
    if (!check.ok) throw new Error(check.error);
    const e = new ProxyRefusedError(check.proxy, "s.example:443", 407, "Proxy Authentication Required");
    expect(e.status).toBe(407);
    expect(e.message).toBe("proxy http://p:3128: refused CONNECT s.example:443: HTTP 407 Proxy Authentication Required (proxy authentication required or refused: check the user and password of the proxy URL)");
    expect(JSON.stringify(e.context)).not.toContain("s3cret");
  });
});
