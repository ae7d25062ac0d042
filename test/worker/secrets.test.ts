// docs/api.md §Secrets and schema/agent-api.ts (step secrets): values go in through the
// management API, are sealed in D1 under OUTPOST_SECRETS_KEY, never come back out of
// /api/v1, and reach an agent only for an active step of its own that names them.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { buildRouter } from "../../worker/router.ts";
import { decodeKeyText, importSecretsKey, openSecret, sealSecret, SecretOpenError, SecretsKeyError, SECRETS_KEY_ERROR } from "../../worker/secrets-crypto.ts";
import { agentCall, call, CLIENT_IP, expectError, postJson, registerAgent, type TestAgent } from "./helpers.ts";

const VALUE = "s3cr3t-value-do-not-leak";

async function putSecret(name: string, value: string, token?: string): Promise<Response> {
  return postJson("/api/v1/secrets", { name, value }, token);
}

async function listed(): Promise<{ name: string; updatedAt: string }[]> {
  const res = await call("/api/v1/secrets");
  expect(res.status).toBe(200);
  return ((await res.json()) as { secrets: { name: string; updatedAt: string }[] }).secrets;
}

async function sealedOf(name: string): Promise<string | undefined> {
  const row = await env.DB.prepare("SELECT sealed FROM secrets WHERE name = ?").bind(name).first<{ sealed: string }>();
  return row?.sealed;
}

// A deployment with one step for `agent`, written straight into D1: these tests are
// about the secrets endpoint, not about how deployments come to name secrets.
async function insertStep(agent: TestAgent, definition: string | null, status = "pending"): Promise<string> {
  const deploymentId = crypto.randomUUID();
  const stepId = crypto.randomUUID();
  const now = Date.now();
  await env.DB.batch([
    env.DB.prepare("INSERT INTO deployments (id, name, status, created_at, updated_at) VALUES (?, 'secrets test', 'queued', ?, ?)").bind(deploymentId, now, now),
    env.DB.prepare(
      "INSERT INTO deployment_steps (id, deployment_id, agent_id, position, name, type, command, definition, retry, status) VALUES (?, ?, ?, 0, 'use', 'shell', 'true', ?, 'never', ?)",
    ).bind(stepId, deploymentId, agent.agentId, definition, status),
  ]);
  return stepId;
}

function fetchStepSecrets(agent: TestAgent, stepId: string): Promise<Response> {
  return agentCall(agent, `/agent/v1/steps/${stepId}/secrets`, { method: "POST" });
}

describe("secrets management API", () => {
  it("creates, replaces, lists by name and deletes, never answering a value", async () => {
    const answers: string[] = [];
    const keep = async (res: Response) => {
      answers.push(await res.clone().text());
      return res;
    };
    const created = await keep(await putSecret("DB_PASSWORD", VALUE));
    expect(created.status).toBe(201);
    expect(await created.json()).toEqual({ name: "DB_PASSWORD" });
    const firstRow = await env.DB.prepare("SELECT created_at, updated_at FROM secrets WHERE name = 'DB_PASSWORD'").first<{ created_at: number; updated_at: number }>();

    await new Promise((r) => setTimeout(r, 5)); // so the replacement's time differs
    const replaced = await keep(await putSecret("DB_PASSWORD", `${VALUE}-2`));
    expect(replaced.status).toBe(201);
    const row = await env.DB.prepare("SELECT created_at, updated_at FROM secrets WHERE name = 'DB_PASSWORD'").first<{ created_at: number; updated_at: number }>();
    expect(row!.created_at).toBe(firstRow!.created_at);
    expect(row!.updated_at).toBeGreaterThan(firstRow!.updated_at);

    for (const name of ["b", "A", "a-1", "B_2"]) expect((await keep(await putSecret(name, VALUE))).status).toBe(201);
    const list = await keep(await call("/api/v1/secrets"));
    const { secrets } = (await list.json()) as { secrets: { name: string; updatedAt: string }[] };
    expect(secrets.map((s) => s.name)).toEqual(["A", "B_2", "DB_PASSWORD", "a-1", "b"]);
    const entry = secrets.find((s) => s.name === "DB_PASSWORD")!;
    expect(Object.keys(entry).sort()).toEqual(["name", "updatedAt"]);
    expect(entry.updatedAt).toBe(new Date(row!.updated_at).toISOString());

    const del = await keep(await call("/api/v1/secrets/b", { method: "DELETE" }));
    expect(del.status).toBe(204);
    expect((await listed()).map((s) => s.name)).not.toContain("b");
    expect(await sealedOf("b")).toBeUndefined();
    await expectError(await keep(await call("/api/v1/secrets/b", { method: "DELETE" })), 404, /secret b not found/);

    expect(answers.length).toBe(9);
    for (const text of answers) {
      expect(text).not.toContain(VALUE);
      expect(text).not.toContain(btoa(VALUE));
    }
  });

  it("keeps only a sealed form in D1, different at every seal", async () => {
    await putSecret("SEALED_ONE", VALUE);
    await putSecret("SEALED_TWO", VALUE);
    const one = (await sealedOf("SEALED_ONE"))!;
    const two = (await sealedOf("SEALED_TWO"))!;
    for (const sealed of [one, two]) {
      expect(sealed).not.toContain(VALUE);
      expect(sealed).not.toContain(btoa(VALUE).slice(0, 16));
      // 12-byte IV ‖ ciphertext (as long as the value) ‖ 16-byte tag.
      expect(atob(sealed).length).toBe(12 + VALUE.length + 16);
    }
    expect(one).not.toBe(two);
    // Replacing with the same value seals afresh too (a new IV every time).
    await putSecret("SEALED_ONE", VALUE);
    expect(await sealedOf("SEALED_ONE")).not.toBe(one);
    const key = await importSecretsKey(env.OUTPOST_SECRETS_KEY);
    expect(await openSecret(key, "SEALED_ONE", (await sealedOf("SEALED_ONE"))!)).toBe(VALUE);
  });

  it("refuses bad names and bodies with a 400, changing nothing", async () => {
    const before = await listed();
    const bad: unknown[] = [
      { name: "bad.name", value: "x" },
      { name: "", value: "x" },
      { name: "a".repeat(65), value: "x" },
      { name: "has space", value: "x" },
      { name: "OK" },
      { name: "OK", value: "" },
      { name: "OK", value: 42 },
      { name: "OK", value: "x", extra: 1 },
      { value: "x" },
      [],
    ];
    for (const body of bad) await expectError(await postJson("/api/v1/secrets", body), 400, /invalid body/);
    await expectError(await call("/api/v1/secrets", { method: "POST", body: "{not json" }), 400, /not valid JSON/);
    await expectError(await call("/api/v1/secrets/bad.name", { method: "DELETE" }), 400, /invalid secret name/);
    await expectError(await call(`/api/v1/secrets/${"a".repeat(65)}`, { method: "DELETE" }), 400, /invalid secret name/);
    await expectError(await call("/api/v1/secrets/x%20y", { method: "DELETE" }), 400, /invalid secret name/);
    expect(await listed()).toEqual(before);
    // The longest name is fine.
    expect((await putSecret("a".repeat(64), "x")).status).toBe(201);
  });

  it("lets a viewer list but not write; refuses a missing token", async () => {
    const { token } = (await (await postJson("/api/v1/api-tokens", { role: "viewer", name: "reader" })).json()) as { token: string };
    await putSecret("VIEWED", VALUE);
    const res = await call("/api/v1/secrets", {}, token);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { secrets: { name: string }[] }).secrets.map((s) => s.name)).toContain("VIEWED");
    await expectError(await putSecret("VIEWED", "other", token), 403);
    await expectError(await call("/api/v1/secrets/VIEWED", { method: "DELETE" }, token), 403);
    await expectError(await call("/api/v1/secrets", {}, null), 401);
    await expectError(await call("/api/v1/secrets", { method: "PUT" }), 405);
    const key = await importSecretsKey(env.OUTPOST_SECRETS_KEY);
    expect(await openSecret(key, "VIEWED", (await sealedOf("VIEWED"))!)).toBe(VALUE);
  });
});

// The binding cannot be removed for one test, so these call the Worker's router with a
// copy of the test env whose OUTPOST_SECRETS_KEY is absent or malformed.
describe("without a usable OUTPOST_SECRETS_KEY", () => {
  const router = buildRouter();
  async function withKey(key: string | undefined, path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set("authorization", "Bearer test-admin");
    headers.set("cf-connecting-ip", CLIENT_IP);
    if (init.body) headers.set("content-type", "application/json");
    const ctx = createExecutionContext();
    const res = await router.fetch(new Request(`https://outpost.test${path}`, { ...init, headers }), { ...env, OUTPOST_SECRETS_KEY: key }, ctx);
    await waitOnExecutionContext(ctx);
    return res;
  }

  it("answers 503 on every secrets endpoint and stores nothing", async () => {
    const agent = await registerAgent("no-key-agent");
    await putSecret("NOKEY", VALUE);
    const stepId = await insertStep(agent, JSON.stringify({ secrets: ["NOKEY"] }));
    const sixteenBytes = btoa("0123456789abcdef");
    for (const key of [undefined, "", "not base64 at all!", sixteenBytes, btoa("x".repeat(33))]) {
      const post = await withKey(key, "/api/v1/secrets", { method: "POST", body: JSON.stringify({ name: "NEW_ONE", value: VALUE }) });
      expect(await expectError(post, 503)).toEqual({ error: SECRETS_KEY_ERROR });
      await expectError(await withKey(key, "/api/v1/secrets"), 503, SECRETS_KEY_ERROR);
      await expectError(await withKey(key, "/api/v1/secrets/NOKEY", { method: "DELETE" }), 503, SECRETS_KEY_ERROR);
      const agentRes = await router.fetch(
        new Request(`https://outpost.test/agent/v1/steps/${stepId}/secrets`, {
          method: "POST",
          headers: { authorization: `Bearer ${agent.credential}`, "cf-connecting-ip": CLIENT_IP },
        }),
        { ...env, OUTPOST_SECRETS_KEY: key },
        createExecutionContext(),
      );
      await expectError(agentRes, 503, SECRETS_KEY_ERROR);
    }
    expect(await sealedOf("NEW_ONE")).toBeUndefined();
    expect(await sealedOf("NOKEY")).toBeDefined();
    // Client mistakes are still told apart from the missing key.
    await expectError(await withKey(undefined, "/api/v1/secrets", { method: "POST", body: "{}" }), 400);
  });

  it("takes base64url, with or without padding, and the same key opens what it sealed", async () => {
    const b64 = env.OUTPOST_SECRETS_KEY!;
    const url = b64.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    expect(url).not.toBe(b64);
    const res = await withKey(url, "/api/v1/secrets", { method: "POST", body: JSON.stringify({ name: "URL_KEY", value: VALUE }) });
    expect(res.status).toBe(201);
    // Sealed under the base64url spelling, opened under the base64 one: the same 32 bytes.
    const key = await importSecretsKey(b64);
    expect(await openSecret(key, "URL_KEY", (await sealedOf("URL_KEY"))!)).toBe(VALUE);
  });
});

describe("secrets-crypto", () => {
  it("decodes only base64 or base64url of exactly 32 bytes", () => {
    expect(decodeKeyText(env.OUTPOST_SECRETS_KEY)).toEqual(new Uint8Array([...Array(32).keys()]));
    expect(decodeKeyText(`${env.OUTPOST_SECRETS_KEY}\n`).length).toBe(32);
    for (const bad of [undefined, "", "   ", "AAEC", btoa("x".repeat(31)), btoa("x".repeat(48)), "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=!", "AA+_AwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"]) {
      expect(() => decodeKeyText(bad), String(bad)).toThrow(SecretsKeyError);
    }
  });

  it("binds the name: a sealed value moved to another name does not open", async () => {
    const key = await importSecretsKey(env.OUTPOST_SECRETS_KEY);
    const sealed = await sealSecret(key, "FROM_NAME", VALUE);
    expect(await openSecret(key, "FROM_NAME", sealed)).toBe(VALUE);
    const err = await openSecret(key, "TO_NAME", sealed).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SecretOpenError);
    expect((err as SecretOpenError).secretName).toBe("TO_NAME");
    expect((err as Error).message).not.toContain(VALUE);
    // Another key, an altered byte, or a truncated value fail the same way.
    const other = await importSecretsKey(btoa(String.fromCharCode(...Array(32).fill(7))));
    await expect(openSecret(other, "FROM_NAME", sealed)).rejects.toThrow(SecretOpenError);
    const bytes = Uint8Array.from(atob(sealed), (c) => c.charCodeAt(0));
    bytes[bytes.length - 1] ^= 1;
    await expect(openSecret(key, "FROM_NAME", btoa(String.fromCharCode(...bytes)))).rejects.toThrow(SecretOpenError);
    await expect(openSecret(key, "FROM_NAME", sealed.slice(0, 20))).rejects.toThrow(/too short/);
    await expect(openSecret(key, "FROM_NAME", "@@not base64@@")).rejects.toThrow(/not base64/);
  });

  it("gives back exactly the value sealed, whatever its characters", async () => {
    const key = await importSecretsKey(env.OUTPOST_SECRETS_KEY);
    for (const value of ["\uFEFFstarts with a BOM", "multi\nline\r\n", "ünïcødé 🔑", " padded ", "x".repeat(64 * 1024)]) {
      expect(await openSecret(key, "ANY", await sealSecret(key, "ANY", value))).toBe(value);
    }
  });

  it("keeps one imported key per key text", async () => {
    const a = importSecretsKey(env.OUTPOST_SECRETS_KEY);
    expect(importSecretsKey(env.OUTPOST_SECRETS_KEY)).toBe(a);
    const other = btoa(String.fromCharCode(...Array(32).fill(9)));
    const b = importSecretsKey(other);
    expect(b).not.toBe(a);
    expect(importSecretsKey(other)).toBe(b);
    expect(await b).toBeInstanceOf(CryptoKey);
  });
});

describe("POST /agent/v1/steps/:stepId/secrets", () => {
  it("gives an active step of this agent exactly the secrets it names, uncached", async () => {
    const agent = await registerAgent("secrets-agent");
    await putSecret("A", VALUE);
    await putSecret("B", "not for this step");
    await putSecret("__proto__", "an own property all the same");
    for (const status of ["pending", "running"]) {
      const stepId = await insertStep(agent, JSON.stringify({ secrets: ["A"] }), status);
      const res = await fetchStepSecrets(agent, stepId);
      expect(res.status, await res.clone().text()).toBe(200);
      expect(res.headers.get("cache-control")).toBe("no-store");
      expect(await res.json()).toEqual({ secrets: { A: VALUE } });
    }
    // A replaced value is what the next fetch gets; the rest of a definition is not in the way.
    await putSecret("A", `${VALUE}-new`);
    const both = await insertStep(agent, JSON.stringify({ type: "plugin", inputs: { x: "${{ secrets.A }}" }, secrets: ["A", "__proto__", "A"] }));
    const res = await fetchStepSecrets(agent, both);
    expect(res.status).toBe(200);
    const body = JSON.parse(await res.text()) as { secrets: Record<string, string> };
    expect(Object.keys(body.secrets).sort()).toEqual(["A", "__proto__"]);
    expect(body.secrets.A).toBe(`${VALUE}-new`);
    expect(Object.getOwnPropertyDescriptor(body.secrets, "__proto__")?.value).toBe("an own property all the same");
    // No definition, or one without `secrets`: nothing to give.
    for (const definition of [null, JSON.stringify({ plugin: { id: "p" } })]) {
      const none = await fetchStepSecrets(agent, await insertStep(agent, definition));
      expect(none.status).toBe(200);
      expect(await none.json()).toEqual({ secrets: {} });
    }
  });

  it("404s another agent's or an unknown step, 410s an ended one, 401s without a credential", async () => {
    const owner = await registerAgent("owner-agent");
    const other = await registerAgent("other-agent");
    await putSecret("OWNED", VALUE);
    const stepId = await insertStep(owner, JSON.stringify({ secrets: ["OWNED"] }));
    const notYours = await fetchStepSecrets(other, stepId);
    expect(await notYours.clone().text()).not.toContain(VALUE);
    await expectError(notYours, 404, `step ${stepId} not found`);
    await expectError(await fetchStepSecrets(owner, crypto.randomUUID()), 404, /not found/);

    for (const status of ["succeeded", "failed", "interrupted", "skipped", "canceled"]) {
      const ended = await insertStep(owner, JSON.stringify({ secrets: ["OWNED"] }), status);
      const res = await fetchStepSecrets(owner, ended);
      expect(await res.clone().text()).not.toContain(VALUE);
      await expectError(res, 410, `step ${ended} has ended`);
    }

    await expectError(await call(`/agent/v1/steps/${stepId}/secrets`, { method: "POST" }, null), 401);
    await expectError(await call(`/agent/v1/steps/${stepId}/secrets`, { method: "POST" }, "not-a-credential"), 401, /invalid agent credential/);
    await expectError(await agentCall(owner, `/agent/v1/steps/${stepId}/secrets`), 405);
    // The rightful owner still gets it: the refusals above changed nothing.
    expect(await (await fetchStepSecrets(owner, stepId)).json()).toEqual({ secrets: { OWNED: VALUE } });
  });

  it("422s with the missing names when a named secret was deleted", async () => {
    const agent = await registerAgent("missing-agent");
    await putSecret("KEPT", VALUE);
    await putSecret("GONE_1", VALUE);
    await putSecret("GONE_2", VALUE);
    const stepId = await insertStep(agent, JSON.stringify({ secrets: ["KEPT", "GONE_1", "GONE_2"] }));
    expect((await fetchStepSecrets(agent, stepId)).status).toBe(200);
    for (const name of ["GONE_1", "GONE_2"]) expect((await call(`/api/v1/secrets/${name}`, { method: "DELETE" })).status).toBe(204);
    const res = await fetchStepSecrets(agent, stepId);
    expect(await res.clone().text()).not.toContain(VALUE);
    const body = await expectError(res, 422, "secret(s) not found: GONE_1, GONE_2");
    expect(body).toEqual({ error: "secret(s) not found: GONE_1, GONE_2", missing: ["GONE_1", "GONE_2"] });
  });

  it("does not hand out a sealed value moved to another name", async () => {
    const agent = await registerAgent("moved-agent");
    await putSecret("ORIGINAL", VALUE);
    await putSecret("TARGET", "the target's own value");
    await env.DB.prepare("UPDATE secrets SET sealed = (SELECT sealed FROM secrets WHERE name = 'ORIGINAL') WHERE name = 'TARGET'").run();
    const stepId = await insertStep(agent, JSON.stringify({ secrets: ["TARGET"] }));
    const res = await fetchStepSecrets(agent, stepId);
    const text = await res.text();
    // The step fails naming the secret (the agent does not wait for ever), and no value leaks.
    expect(res.status).toBe(422);
    expect(JSON.parse(text)).toMatchObject({ missing: ["TARGET"], error: expect.stringMatching(/cannot be opened.*TARGET/) });
    expect(text).not.toContain(VALUE);
  });
});
