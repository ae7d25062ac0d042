// Release key pinning (agent/release-keys.ts): the real `outpost-agent register` stores
// the keys of the register answer in the home, and verifyAgentPackage accepts only
// packages signed by a pinned key — not one signed by another key the server trusts.
// The server here is a stand-in answering POST /agent/v1/register (the Worker's side,
// that the answer carries OUTPOST_RELEASE_PUBLIC_KEYS, is test/worker/install-script.test.ts;
// a real server's keys land in a home in test/e2e/install-script.test.ts).
import { spawn } from "node:child_process";
import { createServer, type Server } from "node:http";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentPackageError, importSigningKey, writeAgentPackageTar, type SigningKey } from "../schema/agent-package.ts";
import { SECOND_TRUSTED_RELEASE_KEY, TRUSTED_RELEASE_KEY } from "../test/worker/fixtures/release-keys.ts";
import { PinnedKeysError, pinReleaseKeys, readPinnedKeys, verifyAgentPackage } from "./release-keys.ts";
import { homePaths } from "./settings.ts";

const agentBin = join(import.meta.dirname, "bin/outpost-agent.mjs");
const work = mkdtempSync(join(tmpdir(), "outpost-release-keys-"));
const enc = new TextEncoder();

async function spkiPem(key: SigningKey): Promise<string> {
  const der = Buffer.from(await crypto.subtle.exportKey("spki", key.publicKey));
  return `-----BEGIN PUBLIC KEY-----\n${der.toString("base64")}\n-----END PUBLIC KEY-----\n`;
}

async function agentPackage(key: SigningKey, version = "2.0.0"): Promise<Uint8Array> {
  const files = [
    { path: "bin/outpost-agent.mjs", mode: 0o644, data: enc.encode("import '../lib/outpost-agent.mjs';\n") },
    { path: "lib/outpost-agent.mjs", mode: 0o644, data: enc.encode("console.log('cli')\n") },
  ];
  const { tar } = await writeAgentPackageTar({ version, platforms: ["linux-x64-gnu"], node: ">=22", entry: "bin/outpost-agent.mjs", files }, key);
  return new Uint8Array(gzipSync(tar));
}

// What the stand-in server answers to the next registration.
let releaseKeys: string | undefined;
let server: Server;
let base = "";

beforeAll(async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      if (req.method !== "POST" || req.url !== "/agent/v1/register") {
        res.writeHead(404, { "content-type": "application/json" }).end('{"error":"no"}');
        return;
      }
      const body: Record<string, string> = { agentId: "agent-1", credential: "cred-1" };
      if (releaseKeys !== undefined) body.releaseKeys = releaseKeys;
      res.writeHead(201, { "content-type": "application/json" }).end(JSON.stringify(body));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const addr = server.address() as { port: number };
  base = `http://127.0.0.1:${addr.port}`;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  rmSync(work, { recursive: true, force: true });
});

function register(home: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [agentBin, "register", "--server", base, "--name", "pinned", "--home", home], {
    env: { PATH: process.env.PATH, OUTPOST_REGISTRATION_TOKEN: "tok" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  return new Promise((resolve) => child.on("exit", (code) => resolve({ code, stdout, stderr })));
}

describe("outpost-agent register", () => {
  it("pins the register answer's release keys in the home as standard PEM, 0600", async () => {
    const a = await importSigningKey(TRUSTED_RELEASE_KEY);
    const b = await importSigningKey(SECOND_TRUSTED_RELEASE_KEY);
    const canonical = (await spkiPem(a)) + (await spkiPem(b));
    releaseKeys = canonical.replace(/\n/g, " "); // as a one-line variable may hold them
    const home = join(work, "home-keys");
    const r = await register(home);
    expect(r.code, r.stderr).toBe(0);
    const file = homePaths(home).releaseKeys;
    expect(readFileSync(file, "utf8")).toBe(canonical);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(r.stdout).toContain(`pinned 2 release key(s) in ${file}: ${a.fingerprint}, ${b.fingerprint}`);
    expect(r.stderr).toBe("");
    expect((await readPinnedKeys(home)).map((k) => k.fingerprint)).toEqual([a.fingerprint, b.fingerprint]);
  });

  it("registers without keys (an empty answer, or a server older than pinning) but warns that the agent cannot be upgraded", async () => {
    for (const [i, keys] of [[0, ""], [1, undefined]] as const) {
      releaseKeys = keys;
      const home = join(work, `home-none-${i}`);
      const r = await register(home);
      expect(r.code, r.stderr).toBe(0);
      expect(existsSync(homePaths(home).credential)).toBe(true);
      expect(existsSync(homePaths(home).releaseKeys)).toBe(false);
      expect(r.stderr).toMatch(/warning: the server trusts no release key .*cannot be upgraded until it is registered again/);
      await expect(readPinnedKeys(home)).rejects.toThrow(PinnedKeysError);
    }
  });
});

describe("verifyAgentPackage", () => {
  it("accepts a package signed by a pinned key and refuses one signed by a key the server trusts but this agent did not pin", async () => {
    const pinnedKey = await importSigningKey(TRUSTED_RELEASE_KEY);
    const other = await importSigningKey(SECOND_TRUSTED_RELEASE_KEY); // trusted by the worker tests' server
    const home = join(work, "home-verify");
    expect(await pinReleaseKeys(home, await spkiPem(pinnedKey))).toEqual({ pinned: true, fingerprints: [pinnedKey.fingerprint] });

    const good = await verifyAgentPackage(home, await agentPackage(pinnedKey));
    expect(good.manifest.version).toBe("2.0.0");
    expect(good.signedBy.fingerprint).toBe(pinnedKey.fingerprint);

    const refusal = await verifyAgentPackage(home, await agentPackage(other)).then(() => null, (e: unknown) => e);
    expect(refusal).toBeInstanceOf(AgentPackageError);
    expect((refusal as AgentPackageError).problem).toBe("untrusted");
    expect((refusal as AgentPackageError).message).toContain(`not signed by a release key this agent pinned when it registered (pinned: ${pinnedKey.fingerprint}`);
    expect((refusal as AgentPackageError).message).toContain(other.fingerprint);

    // Altered after signing by the pinned key: refused as tampered.
    const bytes = await agentPackage(pinnedKey);
    const { gunzipSync } = await import("node:zlib");
    const tar = new Uint8Array(gunzipSync(bytes));
    const at = Buffer.from(tar).indexOf("console.log('cli')");
    tar[at] = "C".charCodeAt(0);
    await expect(verifyAgentPackage(home, new Uint8Array(gzipSync(tar)))).rejects.toMatchObject({ problem: "tampered" });
  });

  it("refuses everything when no key is pinned, or the pinned file is not a key", async () => {
    const home = join(work, "home-empty");
    const key = await importSigningKey(TRUSTED_RELEASE_KEY);
    await expect(verifyAgentPackage(home, await agentPackage(key))).rejects.toThrow(/no release key is pinned in .*release-keys\.pem/);
    expect(await pinReleaseKeys(home, "not a key")).toMatchObject({ pinned: false, warning: expect.stringMatching(/cannot be read/) });
    expect(existsSync(homePaths(home).releaseKeys)).toBe(false);
  });
});
