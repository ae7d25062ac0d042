import { describe, expect, it } from "vitest";
import { apiUrl, channelUrl, checkServerUrl, isLoopbackHost, normalizeServerUrl } from "./url-policy.ts";

describe("server URL policy", () => {
  it("counts only literal loopback addresses and exactly localhost as loopback", () => {
    const loopback = ["localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "127.255.255.255", "[::1]", "::1", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "[::ffff:7f00:1]", "::ffff:7fff:ffff"];
    for (const h of loopback) expect(isLoopbackHost(h), h).toBe(true);
    const other = ["agent.localhost", "x.localhost", "localhost.", "localhost.example.com", "example.com", "10.0.0.1", "128.0.0.1", "126.255.255.255",
      "[::2]", "::", "::ffff:10.0.0.1", "[::ffff:a00:1]", "::ffff:8000:1", "1::1", "::1:0:0:0:1", "127.0.0.1.nip.io"];
    for (const h of other) expect(isLoopbackHost(h), h).toBe(false);
  });

  it("applies the policy to the host as URLs normalize it", () => {
    // WHATWG URL turns these into loopback literals: still loopback.
    for (const u of ["http://127.1:8787", "http://[::ffff:127.0.0.1]:8787", "http://[0:0:0:0:0:0:0:1]/", "http://0x7f000001/"]) expect(checkServerUrl(u, { insecure: false }).ok, u).toBe(true);
    for (const u of ["http://agent.localhost:8787", "http://[::ffff:10.0.0.1]/"]) expect(checkServerUrl(u, { insecure: false }).ok, u).toBe(false);
  });

  it("accepts https anywhere and http only to loopback", () => {
    expect(checkServerUrl("https://outpost.example.com", { insecure: false }).ok).toBe(true);
    expect(checkServerUrl("http://127.0.0.1:8787", { insecure: false }).ok).toBe(true);
    expect(checkServerUrl("http://[::1]:8787/", { insecure: false }).ok).toBe(true);
    const r = checkServerUrl("http://outpost.example.com", { insecure: false });
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toMatch(/--insecure/);
  });

  it("lets --insecure allow plain http to other hosts", () => {
    expect(checkServerUrl("http://10.1.2.3:8080", { insecure: true }).ok).toBe(true);
  });

  it("rejects other schemes, garbage and credentials in the URL", () => {
    for (const u of ["ftp://x", "not a url", "ws://127.0.0.1", "https://u:p@example.com", "https://example.com/?a=1"]) {
      expect(checkServerUrl(u, { insecure: true }).ok, u).toBe(false);
    }
  });

  it("derives API and channel URLs, keeping a base path", () => {
    const r = checkServerUrl("https://example.com/outpost/", { insecure: false });
    const server = normalizeServerUrl(r.ok ? r.url : new URL("x:"));
    expect(server).toBe("https://example.com/outpost");
    expect(apiUrl(server, "/agent/v1/register")).toBe("https://example.com/outpost/agent/v1/register");
    expect(channelUrl(server)).toBe("wss://example.com/outpost/agent/v1/channel");
    expect(channelUrl("http://127.0.0.1:8787")).toBe("ws://127.0.0.1:8787/agent/v1/channel");
  });
});
