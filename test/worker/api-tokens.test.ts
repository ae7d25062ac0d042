// docs/api.md "API tokens": created with a role (shown once, stored hashed), listed
// without secrets, revoked at once.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { sha256Hex } from "../../worker/crypto.ts";
import { call, expectError, postJson } from "./helpers.ts";

describe("API tokens", () => {
  it("creates a token shown once, lists it without its secret, and revokes it", async () => {
    const res = await postJson("/api/v1/api-tokens", { role: "viewer", name: "grafana" });
    expect(res.status, await res.clone().text()).toBe(201);
    const { id, token } = (await res.json()) as { id: string; token: string };
    expect(token).toMatch(/^opt_[A-Za-z0-9_-]{43}$/);
    const row = await env.DB.prepare("SELECT token_hash, role, name FROM api_tokens WHERE id = ?").bind(id).first();
    expect(row).toEqual({ token_hash: await sha256Hex(token), role: "viewer", name: "grafana" });

    const list = await call("/api/v1/api-tokens");
    const text = await list.text();
    expect(list.status).toBe(200);
    expect(text).not.toContain(token);
    expect(text).not.toContain(await sha256Hex(token));
    const { tokens } = JSON.parse(text) as { tokens: Record<string, unknown>[] };
    expect(tokens.find((t) => t.id === id)).toEqual({ id, name: "grafana", role: "viewer", createdAt: expect.any(String) });

    // The viewer token reads, but may not write nor manage tokens.
    expect((await call("/api/v1/deployments", {}, token)).status).toBe(200);
    await expectError(await postJson("/api/v1/registration-tokens", {}, token), 403);
    await expectError(await call("/api/v1/api-tokens", {}, token), 403);

    const del = await call(`/api/v1/api-tokens/${id}`, { method: "DELETE" });
    expect(del.status).toBe(204);
    await expectError(await call("/api/v1/deployments", {}, token), 401, /invalid API token/);
    expect(((await (await call("/api/v1/api-tokens")).json()) as { tokens: { id: string }[] }).tokens.map((t) => t.id)).not.toContain(id);
    await expectError(await call(`/api/v1/api-tokens/${id}`, { method: "DELETE" }), 404);
  });

  it("an admin token it creates can manage tokens itself", async () => {
    const { token } = (await (await postJson("/api/v1/api-tokens", { role: "admin", name: "ci" })).json()) as { token: string };
    const res = await postJson("/api/v1/api-tokens", { role: "viewer", name: "made-by-ci" }, token);
    expect(res.status).toBe(201);
  });

  it("refuses bad input with 400 and changes nothing", async () => {
    const before = await env.DB.prepare("SELECT count(*) AS n FROM api_tokens").first<{ n: number }>();
    await expectError(await postJson("/api/v1/api-tokens", { role: "root", name: "x" }), 400, /role/);
    await expectError(await postJson("/api/v1/api-tokens", { role: "admin" }), 400, /name/);
    await expectError(await postJson("/api/v1/api-tokens", { role: "admin", name: "   " }), 400, /name/);
    await expectError(await postJson("/api/v1/api-tokens", { role: "admin", name: "x", extra: 1 }), 400, /extra/);
    expect(await env.DB.prepare("SELECT count(*) AS n FROM api_tokens").first<{ n: number }>()).toEqual(before);
  });
});
