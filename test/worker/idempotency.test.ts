// docs/protocol.md §Idempotent requests: POST /api/v1/deployments with Idempotency-Key.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createDeployment as createRows } from "../../worker/deployments/create.ts";
import { createDeploymentBody } from "../../schema/api.ts";
import { requestHash } from "../../worker/deployments/idempotency.ts";
import { d1 } from "../../d1/db.ts";
import { call, countRows, expectError, pull, registerAgent } from "./helpers.ts";

const post = (body: unknown, key?: string) =>
  call("/api/v1/deployments", { method: "POST", body: JSON.stringify(body), headers: key === undefined ? {} : { "idempotency-key": key } });
const body = (agent: string, command = "true") => ({ agents: [agent], steps: [{ name: "x", type: "shell" as const, command }] });

describe("§Idempotent requests", () => {
  it("returns the first deployment for a repeated key, creating nothing more", async () => {
    const agent = await registerAgent("idem-1");
    const first = await post(body(agent.name), "key-1");
    expect(first.status).toBe(201);
    const { id } = (await first.json()) as { id: string };
    const before = await countRows("deployments");
    // Same body with keys in another order: the same request.
    const again = await post({ steps: body(agent.name).steps, agents: [agent.name] }, "key-1");
    expect(again.status).toBe(201);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(await again.json()).toEqual({ id });
    expect(await countRows("deployments")).toBe(before);
    expect((await pull(agent, 0)).commands).toHaveLength(1);
  });

  it("answers 422 for the same key with another body, and changes nothing", async () => {
    const agent = await registerAgent("idem-2");
    expect((await post(body(agent.name), "key-2")).status).toBe(201);
    const before = await countRows("deployments");
    await expectError(await post(body(agent.name, "false"), "key-2"), 422, /already used for a different request body/);
    expect(await countRows("deployments")).toBe(before);
  });

  it("validates the header with 400", async () => {
    const agent = await registerAgent("idem-3");
    await expectError(await post(body(agent.name), ""), 400, /Idempotency-Key/);
    await expectError(await post(body(agent.name), "k".repeat(201)), 400, /longer than 200/);
    expect((await post(body(agent.name), "k".repeat(200))).status).toBe(201);
  });

  it("makes concurrent requests with one key create one deployment", async () => {
    const agent = await registerAgent("idem-4");
    const before = await countRows("deployments");
    const answers = await Promise.all(Array.from({ length: 5 }, () => post(body(agent.name), "key-4")));
    expect(answers.map((r) => r.status)).toEqual([201, 201, 201, 201, 201]);
    const ids = new Set(await Promise.all(answers.map(async (r) => ((await r.json()) as { id: string }).id)));
    expect(ids.size).toBe(1);
    expect(await countRows("deployments")).toBe(before + 1);
    expect((await pull(agent, 0)).commands).toHaveLength(1);
  });

  it("heals a half-done dispatch when the request is repeated", async () => {
    const agent = await registerAgent("idem-5");
    const b = body(agent.name);
    // The first request committed its batch (with the key) and died before dispatching.
    const { id } = await createRows(d1(env), env.DB, createDeploymentBody.parse(b), Date.now(), { key: "key-5", requestHash: await requestHash(createDeploymentBody.parse(b)) });
    expect((await pull(agent, 0)).commands).toEqual([]);
    const res = await post(b, "key-5");
    expect(res.status).toBe(201);
    expect(await res.json()).toEqual({ id });
    expect((await pull(agent, 0)).commands.map((c) => c.deploymentId)).toEqual([id]);
    const row = await env.DB.prepare("SELECT dispatched_at AS at FROM deployment_targets WHERE deployment_id = ?").bind(id).first<{ at: number | null }>();
    expect(row?.at).not.toBeNull();
  });
});

describe("§Idempotent requests: keys expire after 24 h", () => {
  it("a key older than 24 h names a new deployment; the cron purges expired keys", async () => {
    const { purgeExpiredKeys } = await import("../../worker/deployments/idempotency.ts");
    const agent = await registerAgent("idem-expiry");
    const first = (await (await post(body(agent.name), "key-expiry")).json()) as { id: string };
    // Within 24 h: the same deployment (and another body is still a 422).
    const { withClockAhead } = await import("./helpers.ts");
    await withClockAhead(23 * 3600_000, async () => {
      const again = await post(body(agent.name), "key-expiry");
      expect(await again.json()).toEqual({ id: first.id });
      await expectError(await post(body(agent.name, "false"), "key-expiry"), 422);
    });
    // After 24 h: the key is free; the same request makes a new deployment.
    await withClockAhead(25 * 3600_000, async () => {
      const later = await post(body(agent.name), "key-expiry");
      expect(later.status).toBe(201);
      expect(later.headers.get("idempotent-replayed")).toBeNull();
      const { id } = (await later.json()) as { id: string };
      expect(id).not.toBe(first.id);
      // …and that one is what the key answers for now.
      expect(await (await post(body(agent.name), "key-expiry")).json()).toEqual({ id });
    });
    const old = await env.DB.prepare("INSERT INTO idempotency_keys (key, request_hash, deployment_id, created_at) VALUES ('stale', 'h', 'd', ?)").bind(Date.now() - 25 * 3600_000).run();
    expect(old.meta.changes).toBe(1);
    expect(await purgeExpiredKeys(env, Date.now())).toBeGreaterThanOrEqual(1);
    expect(await env.DB.prepare("SELECT count(*) AS n FROM idempotency_keys WHERE key = 'stale'").first<{ n: number }>()).toEqual({ n: 0 });
  });
});
