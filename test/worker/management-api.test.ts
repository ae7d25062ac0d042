import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { sha256Hex } from "../../worker/crypto.ts";
import { call, countRows, createDeployment, expectError, postJson, registerAgent } from "./helpers.ts";

const deploymentTables = ["deployments", "deployment_targets", "deployment_steps"];
const rowCounts = () => Promise.all(deploymentTables.map(countRows));

describe("authentication", () => {
  it("answers 401 JSON without a token", async () => {
    await expectError(await call("/api/v1/agents", {}, null), 401, /Authorization/);
  });
  it("answers 401 JSON with a wrong token or a malformed header", async () => {
    await expectError(await call("/api/v1/agents", {}, "not-the-token"), 401, /invalid API token/);
    await expectError(await call("/api/v1/agents", { headers: { authorization: "Basic abc" } }, null), 401);
  });
  it("accepts api_tokens rows: viewers read, only admins write", async () => {
    const now = Date.now();
    await env.DB.prepare("INSERT INTO api_tokens (id, name, token_hash, role, created_at) VALUES (?, ?, ?, ?, ?), (?, ?, ?, ?, ?)")
      .bind("t1", "ci", await sha256Hex("viewer-secret"), "viewer", now, "t2", "ops", await sha256Hex("admin-secret"), "admin", now)
      .run();
    expect((await call("/api/v1/agents", {}, "viewer-secret")).status).toBe(200);
    await expectError(await postJson("/api/v1/registration-tokens", {}, "viewer-secret"), 403, /only read/);
    expect((await postJson("/api/v1/registration-tokens", {}, "admin-secret")).status).toBe(201);
    await env.DB.prepare("UPDATE api_tokens SET revoked_at = ? WHERE id = 't1'").bind(now).run();
    await expectError(await call("/api/v1/agents", {}, "viewer-secret"), 401);
  });
});

describe("routing", () => {
  it("answers unknown routes with a JSON 404", async () => {
    await expectError(await call("/api/v1/nope"), 404, /no such endpoint: GET \/api\/v1\/nope/);
    await expectError(await call("/agent/v1/whatever", { method: "POST" }), 404);
  });
  it("answers a wrong method with 405 and Allow", async () => {
    const res = await call("/api/v1/agents", { method: "DELETE" });
    expect(res.headers.get("allow")).toBe("GET");
    await expectError(res, 405, /DELETE is not allowed/);
  });
});

describe("POST /api/v1/registration-tokens", () => {
  it("creates a token (stored hashed) with an empty body or {}", async () => {
    for (const body of [undefined, "{}", JSON.stringify({ ttlSeconds: 3600 })]) {
      const res = await call("/api/v1/registration-tokens", { method: "POST", body });
      expect(res.status).toBe(201);
      const { token } = (await res.json()) as { token: string };
      expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
      const row = await env.DB.prepare("SELECT expires_at - created_at AS ttl FROM registration_tokens WHERE token_hash = ?").bind(await sha256Hex(token)).first<{ ttl: number }>();
      expect(row?.ttl).toBe(body?.includes("3600") ? 3600_000 : 24 * 3600_000);
    }
  });
  it("rejects bad input with 400 and a message", async () => {
    await expectError(await call("/api/v1/registration-tokens", { method: "POST", body: "{oops" }), 400, /not valid JSON/);
    await expectError(await postJson("/api/v1/registration-tokens", { ttlSeconds: 5 }), 400, /ttlSeconds/);
    await expectError(await postJson("/api/v1/registration-tokens", { extra: 1 }), 400, /extra/);
  });
});

describe("POST /api/v1/deployments", () => {
  it("validates the body and changes nothing on error", async () => {
    await registerAgent("web-1");
    const before = await rowCounts();
    await expectError(await postJson("/api/v1/deployments", { agents: [], steps: [] }), 400, /agents/);
    await expectError(await postJson("/api/v1/deployments", { agents: ["web-1"], steps: [{ name: "x", type: "ftp", command: "c" }] }), 400, /steps\.0\.type/);
    await expectError(await postJson("/api/v1/deployments", { agents: ["web-1", "web-1"], steps: [{ name: "x", type: "shell", command: "c" }] }), 400, /repeat/);
    await expectError(await postJson("/api/v1/deployments", { agents: ["bad name!"], steps: [{ name: "x", type: "shell", command: "c" }] }), 400, /agent names/);
    await expectError(await postJson("/api/v1/deployments", [1, 2]), 400);
    expect(await rowCounts()).toEqual(before);
  });
  it("answers 413 for a body over 256 KiB and changes nothing", async () => {
    await registerAgent("web-2");
    const before = await rowCounts();
    const huge = { agents: ["web-2"], steps: [{ name: "x", type: "shell", command: "x".repeat(300 * 1024) }] };
    await expectError(await postJson("/api/v1/deployments", huge), 413, /larger than/);
    expect(await rowCounts()).toEqual(before);
  });
  it("answers 422 naming unknown or revoked agents and changes nothing", async () => {
    const a = await registerAgent("web-3");
    const revoked = await registerAgent("old-box");
    await env.DB.prepare("UPDATE agents SET revoked_at = ? WHERE id = ?").bind(Date.now(), revoked.agentId).run();
    const before = await rowCounts();
    const body = await expectError(
      await postJson("/api/v1/deployments", { agents: [a.name, "ghost", "old-box"], steps: [{ name: "x", type: "shell", command: "c" }] }),
      422,
      /unknown agents: ghost, old-box/,
    );
    expect(body.unknownAgents).toEqual(["ghost", "old-box"]);
    expect(await rowCounts()).toEqual(before);
  });
  it("creates queued rows for every agent × step and dispatches each target", async () => {
    const a = await registerAgent("b-agent");
    const b = await registerAgent("a-agent");
    const id = await createDeployment([a.name, b.name], [
      { name: "first", command: "echo 1" },
      { name: "second", command: "echo 2" },
    ]);
    const targets = await env.DB.prepare("SELECT agent_id, command_id, dispatched_at FROM deployment_targets WHERE deployment_id = ?").bind(id).all<{ agent_id: string; command_id: string; dispatched_at: number | null }>();
    expect(targets.results).toHaveLength(2);
    for (const t of targets.results) {
      expect(t.command_id).toBe(`${id}:${t.agent_id}`);
      expect(t.dispatched_at).not.toBeNull();
    }
    const res = await call(`/api/v1/deployments/${id}`);
    expect(res.status).toBe(200);
    const view = (await res.json()) as { name: string; status: string; finishedAt: null; createdAt: string; steps: { agent: string; name: string; status: string; exitCode: null }[] };
    expect(view.status).toBe("queued");
    expect(view.finishedAt).toBeNull();
    expect(new Date(view.createdAt).toISOString()).toBe(view.createdAt);
    expect(view.steps.map((s) => `${s.agent}/${s.name}/${s.status}`)).toEqual([
      "a-agent/first/pending",
      "a-agent/second/pending",
      "b-agent/first/pending",
      "b-agent/second/pending",
    ]);
  });
});

describe("GET /api/v1/deployments", () => {
  it("rejects a bad limit with 400", async () => {
    await expectError(await call("/api/v1/deployments?limit=0"), 400, /limit/);
    await expectError(await call("/api/v1/deployments?limit=101"), 400, /limit/);
    await expectError(await call("/api/v1/deployments?limit=abc"), 400, /limit/);
  });
  it("answers 404 for an unknown deployment or step", async () => {
    await expectError(await call("/api/v1/deployments/nope"), 404, /not found/);
    await expectError(await call("/api/v1/deployments/nope/steps/x/log"), 404, /not found/);
  });
});

describe("GET /api/v1/agents", () => {
  it("lists agents with presence fields", async () => {
    const a = await registerAgent("listed");
    const { agents } = (await (await call("/api/v1/agents")).json()) as { agents: Record<string, unknown>[] };
    expect(agents.find((x) => x.id === a.agentId)).toEqual({ id: a.agentId, name: "listed", status: "offline", version: "1.0.0", lastSeenAt: null, tags: [], properties: {} });
  });
});
