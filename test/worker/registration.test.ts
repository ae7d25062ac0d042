import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { sha256Hex } from "../../worker/crypto.ts";
import { agentCall, call, countRows, expectError, postJson, registrationToken } from "./helpers.ts";

const register = (body: unknown) => postJson("/agent/v1/register", body, null);

describe("POST /agent/v1/register", () => {
  it("issues a credential once per token and stores only its hash", async () => {
    const token = await registrationToken();
    const res = await register({ token, name: "db-1", version: "1.0.0", hostname: "db-1.local" });
    expect(res.status).toBe(201);
    const { agentId, credential } = (await res.json()) as { agentId: string; credential: string };
    expect(credential).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const row = await env.DB.prepare("SELECT name, credential_hash, hostname, status FROM agents WHERE id = ?").bind(agentId).first();
    expect(row).toEqual({ name: "db-1", credential_hash: await sha256Hex(credential), hostname: "db-1.local", status: "offline" });
    const used = await env.DB.prepare("SELECT used_by_agent_id FROM registration_tokens WHERE token_hash = ?").bind(await sha256Hex(token)).first();
    expect(used).toEqual({ used_by_agent_id: agentId });

    // The same token again, even for another name: 401, nothing created.
    const before = await countRows("agents");
    await expectError(await register({ token, name: "db-2", version: "1.0.0" }), 401, /already used/);
    expect(await countRows("agents")).toBe(before);
  });

  it("answers 409 for a taken name without consuming the token", async () => {
    const first = await registrationToken();
    expect((await register({ token: first, name: "dup", version: "1" })).status).toBe(201);
    const second = await registrationToken();
    await expectError(await register({ token: second, name: "dup", version: "1" }), 409, /'dup' already exists/);
    // The token is still good for another name.
    expect((await register({ token: second, name: "dup-2", version: "1" })).status).toBe(201);
  });

  it("answers 401 (not 409) to an invalid token asking for a taken name", async () => {
    const token = await registrationToken();
    expect((await register({ token, name: "taken", version: "1" })).status).toBe(201);
    await expectError(await register({ token: "made-up", name: "taken", version: "1" }), 401);
  });

  it("refuses an expired token", async () => {
    const token = await registrationToken();
    await env.DB.prepare("UPDATE registration_tokens SET expires_at = ? WHERE token_hash = ?").bind(Date.now() - 1, await sha256Hex(token)).run();
    await expectError(await register({ token, name: "late", version: "1" }), 401, /expired/);
  });

  it("validates the body with a 400 and a message", async () => {
    const before = await countRows("agents");
    await expectError(await register({ token: "x", name: "no spaces allowed", version: "1" }), 400, /name/);
    await expectError(await register({ token: "x", name: "ok" }), 400, /version/);
    await expectError(await postJson("/agent/v1/register", "just a string", null), 400);
    expect(await countRows("agents")).toBe(before);
  });

  it("lets the credential authenticate and a revoked agent not", async () => {
    const token = await registrationToken();
    const res = await register({ token, name: "rev", version: "1" });
    const agent = { ...((await res.json()) as { agentId: string; credential: string }), name: "rev" };
    expect((await agentCall(agent, "/agent/v1/commands?after=0")).status).toBe(200);
    await expectError(await agentCall({ ...agent, credential: "wrong" }, "/agent/v1/commands?after=0"), 401);
    expect((await call(`/api/v1/agents/${agent.agentId}`, { method: "DELETE" })).status).toBe(200);
    await expectError(await agentCall(agent, "/agent/v1/commands?after=0"), 401, /revoked/);
  });
});
