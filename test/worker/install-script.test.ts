// What install.sh needs from the Worker (docs/agent-lifecycle.md, "Installing" and "Key
// pinning"): the script itself rendered with the request's origin, the current version's
// {version, sha256}, the release keys, and the keys in the register answer. That the
// script runs (dash, a real server, a real package) is test/e2e/install-script.test.ts.
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { importSigningKey, importTrustedKeys, writeAgentPackageTar } from "../../schema/agent-package.ts";
import { sha256Hex } from "../../schema/plugin-package.ts";
import { renderInstallScript } from "../../worker/install-script.sh.ts";
import { VERIFY_PROGRAM } from "../../worker/install-script.verify.ts";
import { getReleaseKeys } from "../../worker/routes/agent-versions.ts";
import { registerAgent } from "../../worker/routes/registration.ts";
import type { ApiRequest } from "../../worker/api-request.ts";
import { call, CLIENT_IP, expectError, postJson, registrationToken } from "./helpers.ts";
import { TRUSTED_RELEASE_KEY } from "./fixtures/release-keys.ts";

const enc = new TextEncoder();

async function agentPackage(version: string): Promise<Uint8Array> {
  const files = [{ path: "bin/outpost-agent.mjs", mode: 0o644, data: enc.encode(`console.log(${JSON.stringify(version)})\n`) }];
  const { tar } = await writeAgentPackageTar({ version, platforms: ["linux-x64-gnu"], node: ">=22", entry: "bin/outpost-agent.mjs", files }, await importSigningKey(TRUSTED_RELEASE_KEY));
  const stream = new Blob([tar as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

const upload = (bytes: Uint8Array) => call("/api/v1/agent-versions", { method: "POST", body: bytes as Uint8Array<ArrayBuffer> });
const fingerprints = async (pem: string) => (await importTrustedKeys(pem)).map((k) => k.fingerprint);
const noKeys = { ...env, OUTPOST_RELEASE_PUBLIC_KEYS: undefined } as typeof env;

describe("GET /agent/install.sh", () => {
  it("serves a POSIX sh script, without a credential, that knows the server it came from", async () => {
    const res = await call("/agent/install.sh", {}, null);
    const script = await res.text();
    expect(res.status, script).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/x-shellscript; charset=utf-8");
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(script.startsWith("#!/bin/sh\n")).toBe(true);
    expect(script).toContain("\nset -eu\n");
    expect(script).toContain("\nSERVER='https://outpost.test'\n");
    expect(script).toContain(VERIFY_PROGRAM.trimEnd()); // the verifier, inside its heredoc
    expect(script).not.toMatch(/@OUTPOST_[A-Z_]+@/);

    // Another host and port: that origin, nothing of the path or query.
    const other = await exports.default.fetch(new Request("http://127.0.0.1:8788/agent/install.sh?x=1", { headers: { "cf-connecting-ip": CLIENT_IP } }));
    expect(await other.text()).toContain("\nSERVER='http://127.0.0.1:8788'\n");
  });

  it("answers 405 to other methods", async () => {
    await expectError(await call("/agent/install.sh", { method: "POST", body: "{}" }, null), 405, /use GET/);
  });

  it("quotes the origin as one shell word, whatever it holds", () => {
    const script = renderInstallScript("https://a'b", "// verifier\n");
    expect(script).toContain(`\nSERVER='https://a'\\''b'\n`);
    expect(() => renderInstallScript("https://x", "a\nOUTPOST_VERIFY_EOF\nb")).toThrow(/end marker/);
  });
});

describe("GET /agent/v1/release-keys", () => {
  it("serves the trusted keys as canonical SPKI PEM without a credential", async () => {
    const res = await call("/agent/v1/release-keys", {}, null);
    const pem = await res.text();
    expect(res.status, pem).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/plain; charset=utf-8");
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(await fingerprints(pem)).toEqual(await fingerprints(env.OUTPOST_RELEASE_PUBLIC_KEYS!));
    expect(pem.match(/-----BEGIN PUBLIC KEY-----\n/g)).toHaveLength(2);
    for (const line of pem.trimEnd().split("\n")) expect(line.length).toBeLessThanOrEqual(64);
  });

  it("is a 503 (the server's configuration) when the server trusts no key", async () => {
    const req = new Request("https://outpost.test/agent/v1/release-keys") as ApiRequest;
    await expectError(await getReleaseKeys(req, noKeys).catch((e: { status: number; message: string }) => Response.json({ error: e.message }, { status: e.status })), 503, /trusts no release key/);
  });
});

describe("GET /agent/v1/agent-versions/current/meta", () => {
  it("is a 404 before any upload, then the current version's {version, sha256}, following the pin", async () => {
    await expectError(await call("/agent/v1/agent-versions/current/meta", {}, null), 404, /no agent version has been uploaded/);

    const old = await agentPackage("3.0.0");
    const newest = await agentPackage("3.1.0");
    expect((await upload(old)).status).toBe(201);
    expect((await upload(newest)).status).toBe(201);
    const res = await call("/agent/v1/agent-versions/current/meta", {}, null);
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(await res.json()).toEqual({ version: "3.1.0", sha256: await sha256Hex(newest) });

    // What the installer then downloads by name carries the same sha256.
    const down = await call("/agent/v1/agent-versions/3.1.0", {}, null);
    expect(down.headers.get("x-content-sha256")).toBe(await sha256Hex(newest));
    expect(new Uint8Array(await down.arrayBuffer())).toEqual(newest);

    const pin = await call("/api/v1/agent-versions/current", { method: "PUT", body: JSON.stringify({ version: "3.0.0" }) });
    expect(pin.status).toBe(200);
    expect(await (await call("/agent/v1/agent-versions/current/meta", {}, null)).json()).toEqual({ version: "3.0.0", sha256: await sha256Hex(old) });
  });
});

describe("POST /agent/v1/register: release key pinning", () => {
  it("answers with the server's release keys, for the agent to pin", async () => {
    const res = await postJson("/agent/v1/register", { token: await registrationToken(), name: "pins-keys", version: "1.0.0" }, null);
    expect(res.status).toBe(201);
    const body = (await res.json()) as { releaseKeys: string };
    expect(body.releaseKeys).toBe(env.OUTPOST_RELEASE_PUBLIC_KEYS);
    expect(await fingerprints(body.releaseKeys)).toHaveLength(2);
  });

  it("answers an empty releaseKeys when the server has none (the agent warns it cannot be upgraded)", async () => {
    const token = await registrationToken();
    const req = new Request("https://outpost.test/agent/v1/register", {
      method: "POST",
      headers: { "content-type": "application/json", "cf-connecting-ip": CLIENT_IP },
      body: JSON.stringify({ token, name: "no-keys", version: "1.0.0" }),
    });
    const res = await registerAgent(req, noKeys);
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ releaseKeys: "", agentId: expect.any(String), credential: expect.any(String) });
  });
});
