// readAgentPackage / writeAgentPackageTar and the release-key helpers, in Node (the
// agent's and the builder's side; the Worker's is test/worker/agent-versions.test.ts).
import { execFileSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import {
  AGENT_MANIFEST_FILE,
  AGENT_PACKAGE_LIMITS,
  AGENT_SIGNATURE_FILE,
  AgentPackageError,
  encodeManifest,
  importSigningKey,
  importTrustedKeys,
  isPackagePath,
  pemBlocks,
  readAgentPackage,
  ReleaseKeyError,
  writeAgentPackageTar,
  type AgentPackageProblem,
  type SigningKey,
  type TrustedKey,
} from "./agent-package.ts";
import { readTar, writeTar, type TarWriteEntry } from "./tar.ts";

const enc = new TextEncoder();

function keyPair(): { privatePem: string; publicPem: string } {
  const k = generateKeyPairSync("ed25519", { privateKeyEncoding: { type: "pkcs8", format: "pem" }, publicKeyEncoding: { type: "spki", format: "pem" } });
  return { privatePem: k.privateKey, publicPem: k.publicKey };
}

const release = keyPair();
const signer: Promise<SigningKey> = importSigningKey(release.privatePem);
const trusted: Promise<TrustedKey[]> = importTrustedKeys(release.publicPem);

const FILES = [
  { path: "bin/outpost-agent.mjs", mode: 0o755, data: enc.encode("import '../lib/cli.mjs';\n") },
  { path: "lib/cli.mjs", mode: 0o644, data: enc.encode("console.log('hi')\n") },
];

async function tarOf(opts: { version?: string; key?: SigningKey; files?: typeof FILES } = {}): Promise<Uint8Array> {
  const input = { version: opts.version ?? "1.2.3", platforms: ["linux-x64-gnu"], node: ">=22", entry: "bin/outpost-agent.mjs", files: opts.files ?? FILES };
  return (await writeAgentPackageTar(input, opts.key ?? (await signer))).tar;
}

const gz = (tar: Uint8Array) => new Uint8Array(gzipSync(tar));
const entries = (tar: Uint8Array): TarWriteEntry[] => readTar(tar).map((e) => ({ path: e.path, type: "file", mode: e.mode, data: new Uint8Array(e.data) }));

async function refusal(bytes: Uint8Array, keys?: TrustedKey[]): Promise<AgentPackageError> {
  const err = await readAgentPackage(bytes, keys ?? (await trusted)).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AgentPackageError);
  return err as AgentPackageError;
}

async function expectRefused(bytes: Uint8Array, problem: AgentPackageProblem, message: RegExp, keys?: TrustedKey[]): Promise<void> {
  const err = await refusal(bytes, keys);
  expect(err.problem).toBe(problem);
  expect(err.message).toMatch(message);
}

describe("a signed package", () => {
  it("verifies, giving the manifest, the files and the key that signed it", async () => {
    const pkg = await readAgentPackage(gz(await tarOf()), await trusted);
    expect(pkg.manifest).toMatchObject({ format: 1, version: "1.2.3", platforms: ["linux-x64-gnu"], node: ">=22", entry: "bin/outpost-agent.mjs", signedBy: (await signer).fingerprint });
    expect(Object.keys(pkg.manifest.files)).toEqual(["bin/outpost-agent.mjs", "lib/cli.mjs"]);
    expect(pkg.files.map((f) => [f.path, new TextDecoder().decode(f.data)])).toEqual(FILES.map((f) => [f.path, new TextDecoder().decode(f.data)]));
    expect(pkg.signedBy.fingerprint).toBe((await trusted)[0].fingerprint);
  });

  it("is the same bytes when built twice (Ed25519 and the manifest rendering are deterministic)", async () => {
    expect(await tarOf()).toEqual(await tarOf());
  });

  it("verifies with one of several trusted keys, concatenated in one variable with line breaks as spaces", async () => {
    const other = keyPair();
    const both = (other.publicPem + release.publicPem).replace(/\n/g, " ");
    const keys = await importTrustedKeys(both);
    expect(keys).toHaveLength(2);
    const pkg = await readAgentPackage(gz(await tarOf()), keys);
    expect(pkg.signedBy.fingerprint).toBe(keys[1].fingerprint);
  });

  it("still verifies after plain `tar` unpacks and repacks it (leading ./ and folder entries are fine)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "agent-pkg-"));
    writeFileSync(join(dir, "pkg.tar"), await tarOf());
    mkdirSync(join(dir, "x"));
    execFileSync("tar", ["xf", join(dir, "pkg.tar"), "-C", join(dir, "x")]);
    execFileSync("tar", ["czf", join(dir, "again.tgz"), "-C", join(dir, "x"), "."]);
    const pkg = await readAgentPackage(new Uint8Array(readFileSync(join(dir, "again.tgz"))), await trusted);
    expect(pkg.manifest.version).toBe("1.2.3");
    expect(pkg.files).toHaveLength(2);
  });
});

describe("a package is refused when", () => {
  it("it is not signed, or its signature file is not a signature", async () => {
    const signed = entries(await tarOf());
    await expectRefused(gz(writeTar(signed.filter((e) => e.path !== AGENT_SIGNATURE_FILE))), "unsigned", /not signed/);
    const short = signed.map((e) => (e.path === AGENT_SIGNATURE_FILE ? { ...e, data: enc.encode("AAAA\n") } : e));
    await expectRefused(gz(writeTar(short)), "unsigned", /holds 3 bytes; an Ed25519 signature is 64/);
  });

  it("another key signed it: named by fingerprint when the manifest says which", async () => {
    const other = await importSigningKey(keyPair().privatePem);
    await expectRefused(gz(await tarOf({ key: other })), "untrusted", new RegExp(`does not trust \\(fingerprint ${other.fingerprint}\\)`));
  });

  it("its manifest changed after signing: 'altered' when it still names a trusted key, else 'altered or untrusted'", async () => {
    const signed = entries(await tarOf());
    const edit = (f: (m: Record<string, unknown>) => void) =>
      gz(writeTar(signed.map((e) => {
        if (e.path !== AGENT_MANIFEST_FILE) return e;
        const m = JSON.parse(new TextDecoder().decode(e.data)) as Record<string, unknown>;
        f(m);
        return { ...e, data: enc.encode(JSON.stringify(m)) };
      })));
    await expectRefused(edit((m) => (m.version = "9.9.9")), "tampered", /altered after signing: its signature does not verify with the trusted key it names/);
    await expectRefused(edit((m) => delete m.signedBy), "untrusted", /signed by another key, or outpost-agent-manifest\.json was altered/);
    // One byte of whitespace is enough: the exact bytes are signed.
    const spaced = signed.map((e) => (e.path === AGENT_MANIFEST_FILE ? { ...e, data: enc.encode(new TextDecoder().decode(e.data) + " ") } : e));
    await expectRefused(gz(writeTar(spaced)), "tampered", /altered after signing/);
  });

  it("a file differs from, is missing from, or is not in the signed manifest", async () => {
    const signed = entries(await tarOf());
    const changed = signed.map((e) => (e.path === "lib/cli.mjs" ? { ...e, data: enc.encode("console.log('evil')\n") } : e));
    await expectRefused(gz(writeTar(changed)), "tampered", /file 'lib\/cli\.mjs' was altered after signing/);
    await expectRefused(gz(writeTar(signed.filter((e) => e.path !== "lib/cli.mjs"))), "tampered", /lacks 1 file\(s\).*lib\/cli\.mjs/);
    await expectRefused(gz(writeTar([...signed, { path: "lib/more.mjs", type: "file", mode: 0o644, data: enc.encode("") }])), "tampered", /'lib\/more\.mjs' is not listed/);
  });

  it("an entry is a link, escapes the root, repeats, or sits inside a file", async () => {
    const signed = entries(await tarOf());
    const plus = (e: TarWriteEntry) => gz(writeTar([...signed, e]));
    await expectRefused(plus({ path: "lib/l", type: "symlink", mode: 0o777, linkTarget: "../../etc" }), "malformed", /'lib\/l' is a symlink/);
    await expectRefused(plus({ path: "lib/h", type: "hardlink", mode: 0o644, linkTarget: "lib/cli.mjs" }), "malformed", /'lib\/h' is a hardlink/);
    await expectRefused(plus({ path: "/etc/cron.d/x", type: "file", mode: 0o644, data: enc.encode("") }), "malformed", /not a canonical relative path/);
    await expectRefused(plus({ path: "lib/../../x", type: "file", mode: 0o644, data: enc.encode("") }), "malformed", /not a canonical relative path/);
    await expectRefused(plus({ path: "lib/cli.mjs", type: "file", mode: 0o644, data: enc.encode("") }), "malformed", /'lib\/cli\.mjs' appears twice/);
    await expectRefused(plus({ path: "lib/cli.mjs/x", type: "file", mode: 0o644, data: enc.encode("") }), "malformed", /inside 'lib\/cli\.mjs', which is a file/);
  });

  it("it is not a gzip'd tar holding an agent manifest", async () => {
    await expectRefused(enc.encode("plain text"), "malformed", /not a gzip file/);
    await expectRefused(gz(enc.encode("x".repeat(2000))), "malformed", /not a valid tar archive/);
    await expectRefused(gz(writeTar([{ path: "outpost-plugin.json", type: "file", mode: 0o644, data: enc.encode("{}") }])), "malformed", /no outpost-agent-manifest\.json/);
    const truncated = gz(await tarOf()).subarray(0, 200);
    await expectRefused(truncated, "malformed", /not valid gzip data|unpacks to more than/);
  });

  it("it is larger than the caps: by its size, as it inflates, or its trailer lies", async () => {
    await expectRefused(new Uint8Array(AGENT_PACKAGE_LIMITS.packageBytes + 1), "malformed", /larger than 33554432 bytes/);
    // A gzip bomb (zeros, tiny compressed) is stopped once it passes the unpacked cap.
    await expectRefused(gz(new Uint8Array(AGENT_PACKAGE_LIMITS.unpackedBytes + 1)), "malformed", /^the package unpacks to more than 67108864 bytes$/);
    // A trailer announcing more than the cap over a small stream: damaged, not a bomb.
    const lying = gz(await tarOf());
    new DataView(lying.buffer, lying.byteOffset + lying.length - 4).setUint32(0, AGENT_PACKAGE_LIMITS.unpackedBytes + 1, true);
    await expectRefused(lying, "malformed", /not valid gzip data/);
  });

  it("its manifest is signed but not a valid manifest", async () => {
    // Signed by a trusted key (a broken builder), so the signature passes and the schema speaks.
    const key = await signer;
    const bad = enc.encode(JSON.stringify({ format: 1, version: "one", platforms: [], node: ">=22", entry: "x", signedBy: key.fingerprint, files: {} }));
    const sig = new Uint8Array(await crypto.subtle.sign("Ed25519", key.key, bad));
    const tar = writeTar([
      { path: AGENT_MANIFEST_FILE, type: "file", mode: 0o644, data: bad },
      { path: AGENT_SIGNATURE_FILE, type: "file", mode: 0o644, data: enc.encode(Buffer.from(sig).toString("base64")) },
    ]);
    await expectRefused(gz(tar), "malformed", /outpost-agent-manifest\.json: version: a version is semver/);
  });
});

describe("release keys and manifest rules", () => {
  it("reads PEM blocks and refuses wrong labels, mismatched ends and bad keys", async () => {
    expect(pemBlocks(release.publicPem, "PUBLIC KEY")).toHaveLength(1);
    expect(() => pemBlocks(release.privatePem, "PUBLIC KEY")).toThrow(/expected a 'PUBLIC KEY' PEM block, found 'PRIVATE KEY'/);
    expect(() => pemBlocks("-----BEGIN PUBLIC KEY-----\nAA==\n-----END PRIVATE KEY-----", "PUBLIC KEY")).toThrow(/ends as 'PRIVATE KEY'/);
    expect(() => pemBlocks("nothing here", "PUBLIC KEY")).toThrow(ReleaseKeyError);
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024, publicKeyEncoding: { type: "spki", format: "pem" }, privateKeyEncoding: { type: "pkcs8", format: "pem" } });
    await expect(importTrustedKeys(rsa.publicKey)).rejects.toThrow(/public key 1 is not an Ed25519 SPKI key/);
    await expect(importSigningKey(rsa.privateKey)).rejects.toThrow(/not an Ed25519 PKCS#8 private key/);
    await expect(readAgentPackage(gz(await tarOf()), [])).rejects.toThrow(/no trusted release key/);
  });

  it("gives a signing key the fingerprint of its public half", async () => {
    expect((await signer).fingerprint).toBe((await trusted)[0].fingerprint);
  });

  it("accepts only canonical package paths", () => {
    for (const ok of ["bin/outpost-agent.mjs", "node_modules/@libsql/linux-x64-gnu/index.node", ".hidden", "a+b/c_d-e.f"]) expect(isPackagePath(ok), ok).toBe(true);
    for (const bad of ["", "/abs", "a//b", "a/./b", "a/../b", "..", "a/", "a\\b", "a b", "ä", "x".repeat(513)]) expect(isPackagePath(bad), bad).toBe(false);
  });

  it("renders a manifest with its files sorted, whatever the order given", () => {
    const m = { format: 1 as const, version: "1.0.0", platforms: ["linux-x64-gnu"], node: ">=22", entry: "b", signedBy: "0".repeat(64), files: { b: "1".repeat(64), a: "2".repeat(64) } };
    const text = new TextDecoder().decode(encodeManifest(m));
    expect(text.indexOf('"a"')).toBeLessThan(text.indexOf('"b":'));
    expect(text.endsWith("}\n")).toBe(true);
  });

  it("refuses to build a manifest that would not verify", async () => {
    const input = { version: "1.0.0", platforms: ["linux-x64-gnu"], node: ">=22", entry: "bin/missing.mjs", files: FILES };
    await expect(writeAgentPackageTar(input, await signer)).rejects.toThrow(/entry is not one of the files/);
    await expect(writeAgentPackageTar({ ...input, entry: "lib/cli.mjs", files: [...FILES, FILES[1]] }, await signer)).rejects.toThrow(/given twice/);
  });
});
