// docs/plugins.md "Plug-in API": upload (201/200/409/413/422), list, read and delete
// plug-in versions, and the agent's download of a package, against real D1 and R2.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { pluginObjectKey } from "../../d1/plugins.ts";
import { PLUGIN_LIMITS } from "../../schema/plugin.ts";
import { sha256Hex } from "../../schema/plugin-package.ts";
import { writeTar, type TarWriteEntry } from "../../schema/tar.ts";
import { agentCall, call, expectError, postJson, registerAgent } from "./helpers.ts";

const enc = new TextEncoder();

function manifest(id: string, version: string, extra: Record<string, unknown> = {}) {
  return { id, version, name: `Plug-in ${id} ${version}`, steps: [{ name: "greet", run: ["./greet.sh"], inputs: [{ name: "who", required: true }] }], ...extra };
}

async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function pkg(m: unknown, more: TarWriteEntry[] = [], script = "#!/bin/sh\necho hi\n"): Promise<Uint8Array> {
  return gzip(
    writeTar([
      { path: "outpost-plugin.json", type: "file", mode: 0o644, data: enc.encode(JSON.stringify(m)) },
      { path: "greet.sh", type: "file", mode: 0o755, data: enc.encode(script) },
      ...more,
    ]),
  );
}

const upload = (bytes: Uint8Array, token?: string) =>
  call("/api/v1/plugins", { method: "POST", body: bytes as Uint8Array<ArrayBuffer>, headers: { "content-type": "application/gzip" } }, token);

async function objectsOf(id: string, version: string): Promise<string[]> {
  return (await env.PLUGINS.list({ prefix: `plugins/${id}/${version}/` })).objects.map((o) => o.key);
}

async function insertDeployment(id: string, status: string, plugin: [string, string]): Promise<void> {
  const now = Date.now();
  await env.DB.batch([
    env.DB.prepare("INSERT INTO deployments (id, name, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?)").bind(id, "uses a plug-in", status, now, now),
    env.DB.prepare("INSERT INTO deployment_plugins (deployment_id, plugin_id, version) VALUES (?, ?, ?)").bind(id, ...plugin),
  ]);
}

describe("POST /api/v1/plugins", () => {
  it("stores a version (201), takes the same bytes again (200) and refuses other bytes for it (409)", async () => {
    const bytes = await pkg(manifest("hello", "1.0.0"));
    const sha256 = await sha256Hex(bytes);
    const first = await upload(bytes);
    expect(first.status, await first.clone().text()).toBe(201);
    const answer = { id: "hello", version: "1.0.0", sha256, steps: ["greet"] };
    expect(await first.json()).toEqual(answer);

    const row = await env.DB.prepare("SELECT sha256, size, name, description FROM plugins WHERE id = 'hello' AND version = '1.0.0'").first();
    expect(row).toEqual({ sha256, size: bytes.length, name: "Plug-in hello 1.0.0", description: "" });
    const keys = await objectsOf("hello", "1.0.0");
    expect(keys).toHaveLength(1);
    expect(new Uint8Array(await (await env.PLUGINS.get(keys[0]))!.arrayBuffer())).toEqual(bytes);

    const again = await upload(bytes);
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual(answer);

    const changed = await pkg(manifest("hello", "1.0.0"), [], "#!/bin/sh\necho changed\n");
    const body = await expectError(await upload(changed), 409, /hello version 1\.0\.0 already exists with other content.*new version/);
    expect(body.sha256).toBe(sha256);
    expect(await objectsOf("hello", "1.0.0")).toEqual(keys);
    expect(await env.DB.prepare("SELECT sha256 FROM plugins WHERE id = 'hello'").all()).toMatchObject({ results: [{ sha256 }] });
  });

  it("two uploads of one version racing with different bytes: one wins, the other is a 409, and only the winner's bytes remain", async () => {
    const a = await pkg(manifest("race", "1.0.0"), [], "#!/bin/sh\necho a\n");
    const b = await pkg(manifest("race", "1.0.0"), [], "#!/bin/sh\necho b\n");
    const [ra, rb] = await Promise.all([upload(a), upload(b)]);
    expect([ra.status, rb.status].sort()).toEqual([201, 409]);
    const winner = ra.status === 201 ? a : b;
    const row = await env.DB.prepare("SELECT * FROM plugins WHERE id = 'race'").first<{ sha256: string; uploaded_at: number }>();
    expect(row!.sha256).toBe(await sha256Hex(winner));
    expect(await objectsOf("race", "1.0.0")).toEqual([pluginObjectKey({ id: "race", version: "1.0.0", sha256: row!.sha256, uploadedAt: row!.uploaded_at })]);
    const stored = await (await call("/agent/v1/plugins/race/1.0.0", {}, (await registerAgent("race-agent")).credential)).arrayBuffer();
    expect(new Uint8Array(stored)).toEqual(winner);
  });

  it("the same bytes uploaded twice at once: one 201, one 200, one stored object", async () => {
    const bytes = await pkg(manifest("twice", "1.0.0"));
    const statuses = (await Promise.all([upload(bytes), upload(bytes)])).map((r) => r.status).sort();
    expect(statuses).toEqual([200, 201]);
    expect(await objectsOf("twice", "1.0.0")).toHaveLength(1);
  });

  it("refuses a bad package with 422 saying what is wrong, and stores nothing", async () => {
    const cases: [Uint8Array, RegExp][] = [
      [enc.encode("this is not a package"), /not a gzip file/],
      [await gzip(enc.encode("gzip, but of plain text ".repeat(40))), /not a valid tar archive/],
      [await pkg(manifest("bad", "1.0.0"), [{ path: "../x", type: "file", mode: 0o644 }]), /entry '\.\.\/x' escapes the package root/],
      [await pkg(manifest("bad", "1.0.0"), [{ path: "up", type: "symlink", mode: 0o777, linkTarget: "../.." }]), /symlink 'up' points out of the package root/],
      [await pkg({ ...manifest("bad", "1.0.0"), steps: [{ name: "greet", run: [] }] }), /outpost-plugin\.json: steps\.0\.run: /],
      [await pkg(manifest("bad", "1.0.0", { steps: [{ name: "x", run: ["./missing.sh"] }] })), /steps\.0\.run\.0: '\.\/missing\.sh' is not a file of the package/],
      [await gzip(writeTar([{ path: "greet.sh", type: "file", mode: 0o755, data: enc.encode("echo") }])), /no outpost-plugin\.json at the package root/],
      [new Uint8Array(0), /not a gzip file/],
    ];
    for (const [bytes, message] of cases) await expectError(await upload(bytes), 422, message);
    expect(await env.DB.prepare("SELECT count(*) AS n FROM plugins WHERE id = 'bad'").first()).toEqual({ n: 0 });
    expect(await objectsOf("bad", "1.0.0")).toEqual([]);
  });

  it("refuses a package over 10 MiB with 413", async () => {
    await expectError(await upload(new Uint8Array(PLUGIN_LIMITS.packageBytes + 1)), 413, /plug-in package is larger than 10485760 bytes/);
  });

  it("needs an admin token", async () => {
    const bytes = await pkg(manifest("guarded", "1.0.0"));
    await expectError(await upload(bytes, "wrong-token"), 401);
    const { token } = (await (await postJson("/api/v1/api-tokens", { role: "viewer", name: "reader" })).json()) as { token: string };
    await expectError(await upload(bytes, token), 403);
    expect(await env.DB.prepare("SELECT count(*) AS n FROM plugins WHERE id = 'guarded'").first()).toEqual({ n: 0 });
  });
});

describe("GET /api/v1/plugins and /api/v1/plugins/:id/:version", () => {
  it("lists one entry per id, versions newest first by semver, name and description of the latest", async () => {
    for (const v of ["1.2.0", "1.10.0", "2.0.0-beta.1", "1.0.0"]) expect((await upload(await pkg(manifest("lister", v, { description: `d${v}` })))).status).toBe(201);
    expect((await upload(await pkg(manifest("another", "0.1.0"))))).toHaveProperty("status", 201);
    const { token } = (await (await postJson("/api/v1/api-tokens", { role: "viewer", name: "lister" })).json()) as { token: string };
    const res = await call("/api/v1/plugins", {}, token);
    expect(res.status).toBe(200);
    const { plugins } = (await res.json()) as { plugins: { id: string }[] };
    const ids = plugins.map((p) => p.id);
    expect(ids).toEqual([...ids].sort());
    expect(plugins.find((p) => p.id === "lister")).toEqual({
      id: "lister",
      name: "Plug-in lister 2.0.0-beta.1",
      description: "d2.0.0-beta.1",
      latest: "2.0.0-beta.1",
      versions: ["2.0.0-beta.1", "1.10.0", "1.2.0", "1.0.0"],
    });
    expect(ids.indexOf("another")).toBeLessThan(ids.indexOf("lister"));
  });

  it("reads a version: the manifest with its defaults, sha256, size and upload time", async () => {
    const bytes = await pkg(manifest("reader", "3.1.4+build.7"));
    const before = Date.now();
    expect((await upload(bytes)).status).toBe(201);
    for (const path of ["/api/v1/plugins/reader/3.1.4+build.7", "/api/v1/plugins/reader/3.1.4%2Bbuild.7"]) {
      const res = await call(path);
      expect(res.status, await res.clone().text()).toBe(200);
      const body = (await res.json()) as Record<string, unknown>;
      expect(body).toEqual({
        id: "reader",
        version: "3.1.4+build.7",
        name: "Plug-in reader 3.1.4+build.7",
        description: "",
        steps: [{ name: "greet", run: ["./greet.sh"], outputs: [], inputs: [{ name: "who", type: "string", required: true, secret: false }] }],
        sha256: await sha256Hex(bytes),
        size: bytes.length,
        uploadedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      });
      expect(Date.parse(body.uploadedAt as string)).toBeGreaterThanOrEqual(before - 1000);
    }
  });

  it("404 for an unknown version, 400 for an invalid id or version", async () => {
    await expectError(await call("/api/v1/plugins/nobody/1.0.0"), 404, /nobody version 1\.0\.0 not found/);
    await expectError(await call("/api/v1/plugins/Bad_Id/1.0.0"), 400, /invalid plug-in id/);
    await expectError(await call("/api/v1/plugins/good/1.0"), 400, /invalid plug-in version/);
    await expectError(await call("/api/v1/plugins/good/1.0.0%ZZ"), 400, /invalid path segment/);
  });
});

describe("DELETE /api/v1/plugins/:id/:version", () => {
  it("is refused (409) while an unfinished deployment uses the version, then removes row and bytes (204)", async () => {
    expect((await upload(await pkg(manifest("deletable", "1.0.0")))).status).toBe(201);
    expect((await upload(await pkg(manifest("deletable", "1.1.0")))).status).toBe(201);
    await insertDeployment("dep-queued", "queued", ["deletable", "1.0.0"]);
    await insertDeployment("dep-done", "succeeded", ["deletable", "1.1.0"]);

    const body = await expectError(await call("/api/v1/plugins/deletable/1.0.0", { method: "DELETE" }), 409, /used by unfinished deployments: dep-queued/);
    expect(body.deployments).toEqual(["dep-queued"]);
    expect(await objectsOf("deletable", "1.0.0")).toHaveLength(1);

    await env.DB.prepare("UPDATE deployments SET status = 'running' WHERE id = 'dep-queued'").run();
    await expectError(await call("/api/v1/plugins/deletable/1.0.0", { method: "DELETE" }), 409);
    await env.DB.prepare("UPDATE deployments SET status = 'failed' WHERE id = 'dep-queued'").run();
    expect((await call("/api/v1/plugins/deletable/1.0.0", { method: "DELETE" })).status).toBe(204);
    expect(await objectsOf("deletable", "1.0.0")).toEqual([]);
    await expectError(await call("/api/v1/plugins/deletable/1.0.0"), 404);
    await expectError(await call("/api/v1/plugins/deletable/1.0.0", { method: "DELETE" }), 404);

    // A finished deployment does not hold a version.
    expect((await call("/api/v1/plugins/deletable/1.1.0", { method: "DELETE" })).status).toBe(204);
    const list = (await (await call("/api/v1/plugins")).json()) as { plugins: { id: string }[] };
    expect(list.plugins.map((p) => p.id)).not.toContain("deletable");
  });

  it("needs an admin token, and the version may be uploaded again afterwards, with other bytes", async () => {
    expect((await upload(await pkg(manifest("again", "1.0.0")))).status).toBe(201);
    const { token } = (await (await postJson("/api/v1/api-tokens", { role: "viewer", name: "no-delete" })).json()) as { token: string };
    await expectError(await call("/api/v1/plugins/again/1.0.0", { method: "DELETE" }, token), 403);
    expect((await call("/api/v1/plugins/again/1.0.0", { method: "DELETE" })).status).toBe(204);
    const other = await pkg(manifest("again", "1.0.0"), [], "#!/bin/sh\necho other\n");
    expect((await upload(other)).status).toBe(201);
    expect(await objectsOf("again", "1.0.0")).toHaveLength(1);
  });
});

describe("GET /agent/v1/plugins/:id/:version", () => {
  it("gives an agent the package bytes with their sha256; 401 without a credential; 404 unknown", async () => {
    const bytes = await pkg(manifest("fetched", "0.9.0"));
    expect((await upload(bytes)).status).toBe(201);
    const agent = await registerAgent("plugin-fetcher");
    const res = await agentCall(agent, "/agent/v1/plugins/fetched/0.9.0");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/gzip");
    expect(res.headers.get("x-content-sha256")).toBe(await sha256Hex(bytes));
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(bytes);

    await expectError(await call("/agent/v1/plugins/fetched/0.9.0", {}, null), 401);
    await expectError(await call("/agent/v1/plugins/fetched/0.9.0", {}, "not-a-credential"), 401);
    await expectError(await agentCall(agent, "/agent/v1/plugins/fetched/0.9.1"), 404);
    await expectError(await agentCall(agent, "/agent/v1/plugins/fetched/latest"), 400, /invalid plug-in version/);
  });
});
