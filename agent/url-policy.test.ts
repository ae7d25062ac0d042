import { describe, expect, it } from "vitest";
import { apiUrl, channelUrl, checkServerUrl, isLoopbackHost, normalizeServerUrl } from "./url-policy.ts";

describe("server URL policy", () => {
  it("knows loopback hosts", () => {
    for (const h of ["localhost", "127.0.0.1", "127.1.2.3", "[::1]", "::1", "agent.localhost"]) expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ["example.com", "10.0.0.1", "128.0.0.1", "localhost.example.com", "[::2]"]) expect(isLoopbackHost(h), h).toBe(false);
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
