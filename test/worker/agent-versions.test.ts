// docs/agent-lifecycle.md "Agent versions API": upload (201/200/409/413/422), list, the
// "current" pin and the public download, against real D1 and R2, with packages signed by
// the test release keys the config trusts (test/worker/fixtures/release-keys.ts).
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { AGENT_MANIFEST_FILE, AGENT_PACKAGE_LIMITS, AGENT_SIGNATURE_FILE, importSigningKey, writeAgentPackageTar, type SigningKey } from "../../schema/agent-package.ts";
import { sha256Hex } from "../../schema/plugin-package.ts";
import { readTar, writeTar, type TarWriteEntry } from "../../schema/tar.ts";
import { postAgentVersion } from "../../worker/routes/agent-versions.ts";
import { ADMIN, call, expectError, postJson } from "./helpers.ts";
import { SECOND_TRUSTED_RELEASE_KEY, TRUSTED_RELEASE_KEY } from "./fixtures/release-keys.ts";

const enc = new TextEncoder();
const trusted = importSigningKey(TRUSTED_RELEASE_KEY);

async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

type Files = { path: string; data: Uint8Array; mode: number }[];
const files = (worker = "console.log('worker')\n"): Files => [
  { path: "bin/outpost-agent.mjs", mode: 0o755, data: enc.encode("import '../lib/outpost-agent.mjs';\n") },
  { path: "lib/outpost-agent.mjs", mode: 0o644, data: enc.encode("console.log('cli')\n") },
  { path: "lib/worker.mjs", mode: 0o644, data: enc.encode(worker) },
];

async function signedTar(version: string, opts: { key?: SigningKey; files?: Files; platforms?: string[] } = {}): Promise<Uint8Array> {
  const { tar } = await writeAgentPackageTar(
    { version, platforms: opts.platforms ?? ["linux-x64-gnu"], node: ">=22", entry: "bin/outpost-agent.mjs", files: opts.files ?? files() },
    opts.key ?? (await trusted),
  );
  return tar;
}

const pkg = async (version: string, opts?: Parameters<typeof signedTar>[1]) => gzip(await signedTar(version, opts));

// The tar's entries as written, for tampering with a signed package.
function entriesOf(tar: Uint8Array): TarWriteEntry[] {
  return readTar(tar).map((e) => ({ path: e.path, type: "file", mode: e.mode, data: new Uint8Array(e.data) }));
}
const repack = (entries: TarWriteEntry[]) => gzip(writeTar(entries));

const upload = (bytes: Uint8Array, token: string | null = ADMIN) =>
  call("/api/v1/agent-versions", { method: "POST", body: bytes as Uint8Array<ArrayBuffer>, headers: { "content-type": "application/gzip" } }, token);

async function stored(version: string): Promise<{ rows: number; objects: number }> {
  const row = await env.DB.prepare("SELECT count(*) AS n FROM agent_versions WHERE version = ?").bind(version).first<{ n: number }>();
  const objects = (await env.AGENT_PACKAGES.list({ prefix: `agent-versions/${version}/` })).objects.length;
  return { rows: row!.n, objects };
}

async function refused(bytes: Uint8Array, version: string, problem: string, message: RegExp): Promise<void> {
  const body = await expectError(await upload(bytes), 422, message);
  expect(body.problem).toBe(problem);
  expect(await stored(version)).toEqual({ rows: 0, objects: 0 });
}

describe("GET /agent/v1/agent-versions/current before any upload", () => {
  // First in the file: storage is shared by this file's tests.
  it("is a 404 saying nothing was uploaded, and the list is empty with no current", async () => {
    await expectError(await call("/agent/v1/agent-versions/current", {}, null), 404, /no agent version has been uploaded/);
    const list = await call("/api/v1/agent-versions");
    expect(await list.json()).toEqual({ versions: [], current: null, pinned: false });
  });
});

describe("POST /api/v1/agent-versions", () => {
  it("stores a version (201), takes the same bytes again (200) and refuses other bytes for it (409)", async () => {
    const bytes = await pkg("1.0.0", { platforms: ["linux-x64-gnu", "linux-x64-musl"] });
    const sha256 = await sha256Hex(bytes);
    const first = await upload(bytes);
    expect(first.status, await first.clone().text()).toBe(201);
    const answer = { version: "1.0.0", sha256, platforms: ["linux-x64-gnu", "linux-x64-musl"] };
    expect(await first.json()).toEqual(answer);
    const row = await env.DB.prepare("SELECT sha256, size, platforms, pinned_at FROM agent_versions WHERE version = '1.0.0'").first();
    expect(row).toEqual({ sha256, size: bytes.length, platforms: '["linux-x64-gnu","linux-x64-musl"]', pinned_at: null });
    const keys = (await env.AGENT_PACKAGES.list({ prefix: "agent-versions/1.0.0/" })).objects.map((o) => o.key);
    expect(keys).toHaveLength(1);
    expect(new Uint8Array(await (await env.AGENT_PACKAGES.get(keys[0]))!.arrayBuffer())).toEqual(bytes);

    const again = await upload(bytes);
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual(answer);

    const changed = await pkg("1.0.0", { files: files("console.log('changed')\n") });
    const body = await expectError(await upload(changed), 409, /agent version 1\.0\.0 already exists with other content.*new version/);
    expect(body.sha256).toBe(sha256);
    expect((await env.AGENT_PACKAGES.list({ prefix: "agent-versions/1.0.0/" })).objects.map((o) => o.key)).toEqual(keys);
  });

  it("accepts a package signed by any of the trusted keys", async () => {
    const res = await upload(await pkg("1.0.1", { key: await importSigningKey(SECOND_TRUSTED_RELEASE_KEY) }));
    expect(res.status, await res.clone().text()).toBe(201);
    expect(await stored("1.0.1")).toEqual({ rows: 1, objects: 1 });
  });

  it("refuses an unsigned package (422 unsigned)", async () => {
    const entries = entriesOf(await signedTar("2.0.0")).filter((e) => e.path !== AGENT_SIGNATURE_FILE);
    await refused(await repack(entries), "2.0.0", "unsigned", /not signed: no outpost-agent-manifest\.sig/);
    const garbled = entriesOf(await signedTar("2.0.0")).map((e) => (e.path === AGENT_SIGNATURE_FILE ? { ...e, data: enc.encode("not base64!\n") } : e));
    await refused(await repack(garbled), "2.0.0", "unsigned", /outpost-agent-manifest\.sig is not base64/);
  });

  it("refuses a package signed by a key the server does not trust (422 untrusted)", async () => {
    const pair = (await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"])) as CryptoKeyPair;
    const der = new Uint8Array((await crypto.subtle.exportKey("pkcs8", pair.privateKey)) as ArrayBuffer);
    const other = await importSigningKey(`-----BEGIN PRIVATE KEY-----\n${btoa(String.fromCharCode(...der))}\n-----END PRIVATE KEY-----\n`);
    await refused(await pkg("2.0.1", { key: other }), "2.0.1", "untrusted", new RegExp(`signed by a key this server does not trust \\(fingerprint ${other.fingerprint}\\)`));
  });

  it("refuses a package whose file was altered, added or removed after signing (422 tampered)", async () => {
    const signed = entriesOf(await signedTar("2.0.2"));
    const altered = signed.map((e) => (e.path === "lib/worker.mjs" ? { ...e, data: enc.encode("process.exit(1)\n") } : e));
    await refused(await repack(altered), "2.0.2", "tampered", /file 'lib\/worker\.mjs' was altered after signing/);
    const extra = [...signed, { path: "lib/evil.mjs", type: "file" as const, mode: 0o644, data: enc.encode("x") }];
    await refused(await repack(extra), "2.0.2", "tampered", /file 'lib\/evil\.mjs' is not listed in the signed manifest/);
    const missing = signed.filter((e) => e.path !== "lib/worker.mjs");
    await refused(await repack(missing), "2.0.2", "tampered", /lacks 1 file\(s\) of its signed manifest: lib\/worker\.mjs/);
  });

  it("refuses a package whose manifest was altered after signing (422 tampered)", async () => {
    const signed = entriesOf(await signedTar("2.0.3"));
    const evil = await sha256Hex(enc.encode("process.exit(1)\n"));
    const altered = signed.map((e) => {
      if (e.path === AGENT_MANIFEST_FILE) {
        const m = JSON.parse(new TextDecoder().decode(e.data));
        m.files["lib/worker.mjs"] = evil; // and the file to match: only the signature can tell
        return { ...e, data: enc.encode(JSON.stringify(m, null, 2) + "\n") };
      }
      return e.path === "lib/worker.mjs" ? { ...e, data: enc.encode("process.exit(1)\n") } : e;
    });
    await refused(await repack(altered), "2.0.3", "tampered", /outpost-agent-manifest\.json was altered after signing/);
  });

  it("refuses what is not an agent package at all (422 malformed)", async () => {
    await refused(enc.encode("hello, not a package"), "x", "malformed", /not a gzip file/);
    await refused(await gzip(enc.encode("not a tar archive, only text".repeat(40))), "x", "malformed", /not a valid tar archive/);
    const plugin = writeTar([{ path: "outpost-plugin.json", type: "file", mode: 0o644, data: enc.encode("{}") }]);
    await refused(await gzip(plugin), "x", "malformed", /no outpost-agent-manifest\.json at the package root/);
    const link = [...entriesOf(await signedTar("2.0.4")), { path: "lib/link", type: "symlink" as const, mode: 0o777, linkTarget: "/etc/passwd" }];
    await refused(await repack(link), "2.0.4", "malformed", /'lib\/link' is a symlink; an agent package holds only files and folders/);
    const escape = [...entriesOf(await signedTar("2.0.4")), { path: "../outside.mjs", type: "file" as const, mode: 0o644, data: enc.encode("x") }];
    await refused(await repack(escape), "2.0.4", "malformed", /"\.\.\/outside\.mjs" is not a canonical relative path/);
  });

  it("refuses a body over the size cap (413) without storing it", async () => {
    await expectError(await upload(new Uint8Array(AGENT_PACKAGE_LIMITS.packageBytes + 1)), 413, /agent package is larger than/);
  });

  it("needs an admin token: none is a 401, a viewer's a 403", async () => {
    const bytes = await pkg("2.0.5");
    await expectError(await upload(bytes, null), 401);
    const viewer = await postJson("/api/v1/api-tokens", { role: "viewer", name: "reader" });
    const { token } = (await viewer.json()) as { token: string };
    await expectError(await upload(bytes, token), 403);
    expect(await stored("2.0.5")).toEqual({ rows: 0, objects: 0 });
  });

  it("answers 503 while the server trusts no release key, or cannot read its keys", async () => {
    const request = () => Object.assign(new Request("https://outpost.test/api/v1/agent-versions", { method: "POST", headers: { authorization: "Bearer test-admin" }, body: "x" }), { params: {}, query: {} });
    for (const [value, message] of [
      [undefined, /trusts no release key.*OUTPOST_RELEASE_PUBLIC_KEYS/],
      ["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", /OUTPOST_RELEASE_PUBLIC_KEYS cannot be used: public key 1 is not an Ed25519 SPKI key/],
    ] as const) {
      const err = await postAgentVersion(request() as never, { ...env, OUTPOST_RELEASE_PUBLIC_KEYS: value }).catch((e: unknown) => e);
      expect(err).toMatchObject({ status: 503 });
      expect((err as Error).message).toMatch(message);
    }
  });
});

describe("listing, the current pin and the download", () => {
  it("lists newest first by semver; current is the newest unless pinned; the download serves either", async () => {
    const uploads: Record<string, Uint8Array> = {};
    for (const v of ["10.2.0", "10.10.0", "10.10.0-rc.1", "9.0.0"]) {
      uploads[v] = await pkg(v);
      expect((await upload(uploads[v])).status).toBe(201);
    }
    const list = async () => (await (await call("/api/v1/agent-versions")).json()) as { versions: { version: string; sha256: string; platforms: string[]; size: number; uploadedAt: string }[]; current: string | null; pinned: boolean };
    const first = await list();
    expect(first.versions.map((v) => v.version)).toEqual(["10.10.0", "10.10.0-rc.1", "10.2.0", "9.0.0", "1.0.1", "1.0.0"]);
    expect(first.versions[0]).toEqual({ version: "10.10.0", sha256: await sha256Hex(uploads["10.10.0"]), platforms: ["linux-x64-gnu"], size: uploads["10.10.0"].length, uploadedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
    expect(first).toMatchObject({ current: "10.10.0", pinned: false });

    const download = async (version: string) => {
      const res = await call(`/agent/v1/agent-versions/${version}`, {}, null); // no credential: install.sh has none
      expect(res.status, res.status === 200 ? "" : await res.clone().text()).toBe(200);
      return { res, bytes: new Uint8Array(await res.arrayBuffer()) };
    };
    const current = await download("current");
    expect(current.bytes).toEqual(uploads["10.10.0"]);
    expect(current.res.headers.get("x-outpost-agent-version")).toBe("10.10.0");
    expect(current.res.headers.get("cache-control")).toBe("no-store");

    await expectError(await call("/api/v1/agent-versions/current", { method: "PUT", body: JSON.stringify({ version: "3.3.3" }) }), 404, /agent version 3\.3\.3 not found/);
    await expectError(await call("/api/v1/agent-versions/current", { method: "PUT", body: JSON.stringify({ version: "latest" }) }), 400);
    expect(await list()).toMatchObject({ current: "10.10.0", pinned: false });

    const pin = await call("/api/v1/agent-versions/current", { method: "PUT", body: JSON.stringify({ version: "10.2.0" }) });
    expect(await pin.json()).toEqual({ current: "10.2.0", pinned: true });
    expect(await list()).toMatchObject({ current: "10.2.0", pinned: true });
    expect((await download("current")).bytes).toEqual(uploads["10.2.0"]);
    // Moving the pin leaves exactly one pinned row.
    await call("/api/v1/agent-versions/current", { method: "PUT", body: JSON.stringify({ version: "9.0.0" }) });
    const pinned = await env.DB.prepare("SELECT version FROM agent_versions WHERE pinned_at IS NOT NULL").all<{ version: string }>();
    expect(pinned.results).toEqual([{ version: "9.0.0" }]);

    const unpin = await call("/api/v1/agent-versions/current", { method: "PUT", body: JSON.stringify({ version: null }) });
    expect(await unpin.json()).toEqual({ current: "10.10.0", pinned: false });

    const one = await download("10.10.0-rc.1");
    expect(one.bytes).toEqual(uploads["10.10.0-rc.1"]);
    expect(one.res.headers.get("x-content-sha256")).toBe(await sha256Hex(uploads["10.10.0-rc.1"]));
    expect(one.res.headers.get("content-type")).toBe("application/gzip");
    await expectError(await call("/agent/v1/agent-versions/7.7.7", {}, null), 404, /agent version 7\.7\.7 not found/);
    await expectError(await call("/agent/v1/agent-versions/not-a-version", {}, null), 400);
  });
});
