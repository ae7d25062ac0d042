// An agent package (docs/agent-lifecycle.md): a gzip'd tar, built by
// scripts/agent-package.ts, checked by the Worker on upload and by the agent before it
// unpacks one, whoever served it. One definition for all three, on WebCrypto only
// (workerd and Node 22 both have Ed25519), so what passes here passes everywhere.
//
// Layout: the root holds outpost-agent-manifest.json (which lists every other file with
// its sha256), outpost-agent-manifest.sig (base64 of the Ed25519 signature of the
// manifest's exact bytes) and the files. A package is trusted when the signature
// verifies with one of the trusted release keys AND every file matches its sha256 AND
// no listed file is missing AND no unlisted file is there. Only regular files and
// folders are accepted (no links, devices); paths are canonical, relative and inside
// the root; tar modes carry no meaning (they are not signed): whoever unpacks a
// package chooses the modes.
import { z } from "zod";
import { describeZodError } from "./errors.ts";
import { semver } from "./plugin.ts";
import { sha256Hex } from "./plugin-package.ts";
import { GunzipError, gunzipCapped } from "./gzip.ts";
import { readTar, TarError, writeTar, type TarEntry, type TarWriteEntry } from "./tar.ts";

export const AGENT_MANIFEST_FILE = "outpost-agent-manifest.json";
export const AGENT_SIGNATURE_FILE = "outpost-agent-manifest.sig";
export const AGENT_PACKAGE_FORMAT = 1;
// Where a package's worker process is: the monitor of an upgraded agent starts it from
// there (docs/agent-lifecycle.md §Upgrade).
export const PACKAGE_WORKER = "lib/worker.mjs";
// Its monitor module: after a healthy switch the running monitor hands over to it, and
// `outpost-agent run` of any version starts it when <home>/agent-version.json names it.
export const PACKAGE_MONITOR = "lib/monitor.mjs";

// The Worker holds the upload and its unpacked tar in memory at once while it checks
// them (128 MB per isolate): 32 + 64 MiB leaves room for the rest. One platform's
// native libSQL is about 9.5 MB unpacked; a package for 4–5 platforms fits.
export const AGENT_PACKAGE_LIMITS = {
  packageBytes: 32 * 1024 * 1024, // the .tar.gz as uploaded
  unpackedBytes: 64 * 1024 * 1024, // the tar inside, headers included
  files: 2000,
  manifestBytes: 512 * 1024,
  signatureBytes: 1024,
} as const;

const SHA256_HEX = /^[0-9a-f]{64}$/;
// Canonical: '/'-separated, no empty, '.' or '..' segment, a short safe alphabet. The
// builder only writes such names, so anything else is refused rather than normalised.
const SEGMENT = /^(?!\.{1,2}$)[A-Za-z0-9._@+-]{1,128}$/;
const MAX_PATH = 512;

export function isPackagePath(path: string): boolean {
  return path.length <= MAX_PATH && path.split("/").every((s) => SEGMENT.test(s));
}

const packagePath = z.string().refine(isPackagePath, "a package path is relative and '/'-separated, of letters, digits and . _ @ + -, without '.' or '..' segments");
const sha256hex = z.string().regex(SHA256_HEX, "a sha256 is 64 lower-case hex digits");
// Node's platform-arch[-libc] names as used by @libsql's native packages: linux-x64-gnu.
export const platformName = z.string().regex(/^[a-z0-9]+(-[a-z0-9]+){1,3}$/, "a platform is os-arch[-abi], e.g. linux-x64-gnu");

export const agentManifest = z
  .strictObject({
    format: z.literal(AGENT_PACKAGE_FORMAT),
    version: semver,
    platforms: z.array(platformName).min(1).max(32),
    node: z.string().regex(/^>=\d+(\.\d+){0,2}$/, "node is a minimum version, e.g. >=22"),
    entry: packagePath, // run as `node <package>/<entry> …`
    // The sha256 of the signing key's SPKI: lets a refusal say "untrusted key" rather
    // than "altered". Never used to pick the key that must verify.
    signedBy: sha256hex,
    files: z.record(packagePath, sha256hex),
  })
  .refine((m) => m.entry in m.files, { message: "entry is not one of the files", path: ["entry"] })
  .refine((m) => !(AGENT_MANIFEST_FILE in m.files) && !(AGENT_SIGNATURE_FILE in m.files), { message: "files must not list the manifest or its signature", path: ["files"] });
export type AgentManifest = z.infer<typeof agentManifest>;

export type AgentPackageFile = { path: string; data: Uint8Array };
export type AgentPackage = { manifest: AgentManifest; files: AgentPackageFile[]; signedBy: TrustedKey };

// malformed: not a readable package; unsigned: no signature; untrusted: signed by a key
// not trusted here; tampered: the manifest or a file changed after signing.
export type AgentPackageProblem = "malformed" | "unsigned" | "untrusted" | "tampered";

export class AgentPackageError extends Error {
  readonly problem: AgentPackageProblem;
  constructor(problem: AgentPackageProblem, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "AgentPackageError";
    this.problem = problem;
  }
}

export class ReleaseKeyError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ReleaseKeyError";
  }
}

// ---- keys -------------------------------------------------------------------------

export type TrustedKey = { key: CryptoKey; fingerprint: string };
// publicKey: the private key's public half, so a builder can check what it signed.
export type SigningKey = { key: CryptoKey; fingerprint: string; publicKey: CryptoKey };

const ED25519 = { name: "Ed25519" } as const;

// The DER bodies of every `-----BEGIN <label>-----` block. Whitespace inside a block is
// ignored, so a PEM whose line breaks became spaces (an env file, a one-line variable)
// still reads.
export function pemBlocks(text: string, label: string): Uint8Array[] {
  const out: Uint8Array[] = [];
  const re = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END ([A-Z0-9 ]+)-----/g;
  for (const m of text.matchAll(re)) {
    if (m[1] !== m[3]) throw new ReleaseKeyError(`a PEM block begins as '${m[1]}' but ends as '${m[3]}'`);
    if (m[1] !== label) throw new ReleaseKeyError(`expected a '${label}' PEM block, found '${m[1]}'`);
    out.push(base64Decode(m[2].replace(/\s+/g, ""), `the body of a '${label}' PEM block`));
  }
  if (out.length === 0) throw new ReleaseKeyError(`no '-----BEGIN ${label}-----' block found`);
  return out;
}

// One or more SPKI PEM public keys, concatenated (OUTPOST_RELEASE_PUBLIC_KEYS).
export async function importTrustedKeys(pem: string): Promise<TrustedKey[]> {
  const keys: TrustedKey[] = [];
  for (const [i, der] of pemBlocks(pem, "PUBLIC KEY").entries()) {
    let key: CryptoKey;
    try {
      key = await crypto.subtle.importKey("spki", der as Uint8Array<ArrayBuffer>, ED25519, true, ["verify"]);
    } catch (e) {
      throw new ReleaseKeyError(`public key ${i + 1} is not an Ed25519 SPKI key: ${(e as Error).message}`, { cause: e });
    }
    keys.push({ key, fingerprint: await sha256Hex(der) });
  }
  return keys;
}

// A PKCS#8 PEM Ed25519 private key; its fingerprint is that of its public half, which
// WebCrypto gives only through JWK (x is the public key).
export async function importSigningKey(pem: string): Promise<SigningKey> {
  const blocks = pemBlocks(pem, "PRIVATE KEY");
  if (blocks.length !== 1) throw new ReleaseKeyError(`expected one private key, found ${blocks.length}`);
  let key: CryptoKey;
  let publicKey: CryptoKey;
  let spki: ArrayBuffer;
  try {
    key = await crypto.subtle.importKey("pkcs8", blocks[0] as Uint8Array<ArrayBuffer>, ED25519, true, ["sign"]);
    const { x } = (await crypto.subtle.exportKey("jwk", key)) as JsonWebKey;
    publicKey = await crypto.subtle.importKey("jwk", { kty: "OKP", crv: "Ed25519", x }, ED25519, true, ["verify"]);
    spki = (await crypto.subtle.exportKey("spki", publicKey)) as ArrayBuffer;
  } catch (e) {
    throw new ReleaseKeyError(`not an Ed25519 PKCS#8 private key: ${(e as Error).message}`, { cause: e });
  }
  return { key, publicKey, fingerprint: await sha256Hex(new Uint8Array(spki)) };
}

// ---- writing ----------------------------------------------------------------------

export type AgentPackageInput = { version: string; platforms: string[]; node: string; entry: string; files: { path: string; data: Uint8Array; mode: number }[] };

// The manifest's bytes are what is signed: one fixed rendering (files sorted by path).
export function encodeManifest(manifest: AgentManifest): Uint8Array {
  const files = Object.fromEntries(Object.entries(manifest.files).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return new TextEncoder().encode(JSON.stringify({ ...manifest, files }, null, 2) + "\n");
}

export async function signManifest(bytes: Uint8Array, key: SigningKey): Promise<string> {
  return base64Encode(new Uint8Array(await crypto.subtle.sign(ED25519, key.key, bytes as Uint8Array<ArrayBuffer>)));
}

// The tar (not yet gzip'd: Node and workerd compress differently) of a signed package:
// manifest, signature, then the files in the caller's order.
export async function writeAgentPackageTar(input: AgentPackageInput, key: SigningKey): Promise<{ tar: Uint8Array; manifest: AgentManifest }> {
  const files: Record<string, string> = {};
  for (const f of input.files) files[f.path] = await sha256Hex(f.data);
  const parsed = agentManifest.safeParse({ format: AGENT_PACKAGE_FORMAT, version: input.version, platforms: input.platforms, node: input.node, entry: input.entry, signedBy: key.fingerprint, files });
  if (!parsed.success) throw new AgentPackageError("malformed", `cannot build the manifest: ${describeZodError(parsed.error)}`);
  if (Object.keys(files).length !== input.files.length) throw new AgentPackageError("malformed", "a file path is given twice");
  const manifestBytes = encodeManifest(parsed.data);
  const signature = new TextEncoder().encode((await signManifest(manifestBytes, key)) + "\n");
  const entries: TarWriteEntry[] = [
    { path: AGENT_MANIFEST_FILE, type: "file", mode: 0o644, data: manifestBytes },
    { path: AGENT_SIGNATURE_FILE, type: "file", mode: 0o644, data: signature },
    ...input.files.map((f): TarWriteEntry => ({ path: f.path, type: "file", mode: f.mode, data: f.data })),
  ];
  return { tar: writeTar(entries), manifest: parsed.data };
}

// ---- reading and verifying --------------------------------------------------------

export async function readAgentPackage(bytes: Uint8Array, trusted: readonly TrustedKey[]): Promise<AgentPackage> {
  if (trusted.length === 0) throw new ReleaseKeyError("no trusted release key to verify the package with");
  if (bytes.length > AGENT_PACKAGE_LIMITS.packageBytes) throw malformed(`the package is larger than ${AGENT_PACKAGE_LIMITS.packageBytes} bytes`);
  let tar: Uint8Array;
  try {
    tar = await gunzipCapped(bytes, AGENT_PACKAGE_LIMITS.unpackedBytes);
  } catch (e) {
    if (e instanceof GunzipError) throw malformed(e.message, e);
    throw e;
  }
  let raw: TarEntry[];
  try {
    raw = readTar(tar);
  } catch (e) {
    if (e instanceof TarError) throw malformed(`not a valid tar archive inside the gzip: ${e.message}`, e);
    throw e;
  }
  const entries = fileEntries(raw);
  const manifestBytes = entries.get(AGENT_MANIFEST_FILE);
  if (!manifestBytes) throw malformed(`no ${AGENT_MANIFEST_FILE} at the package root: this is not an agent package`);
  if (manifestBytes.length > AGENT_PACKAGE_LIMITS.manifestBytes) throw malformed(`${AGENT_MANIFEST_FILE} is larger than ${AGENT_PACKAGE_LIMITS.manifestBytes} bytes`);
  const sigFile = entries.get(AGENT_SIGNATURE_FILE);
  if (!sigFile) throw new AgentPackageError("unsigned", `the package is not signed: no ${AGENT_SIGNATURE_FILE} at its root`);

  const signature = readSignature(sigFile);
  const signer = await verifyingKey(manifestBytes, signature, trusted);
  if (!signer) throw signatureRefusal(manifestBytes, trusted);

  const manifest = parseManifest(manifestBytes);
  const files: AgentPackageFile[] = [];
  for (const [path, data] of entries) {
    if (path === AGENT_MANIFEST_FILE || path === AGENT_SIGNATURE_FILE) continue;
    const expected = manifest.files[path];
    if (expected === undefined) throw new AgentPackageError("tampered", `file '${path}' is not listed in the signed manifest`);
    const actual = await sha256Hex(data);
    if (actual !== expected) throw new AgentPackageError("tampered", `file '${path}' was altered after signing: its sha256 is ${actual}, the signed manifest says ${expected}`);
    files.push({ path, data });
  }
  const missing = Object.keys(manifest.files).filter((p) => !entries.has(p));
  if (missing.length > 0) throw new AgentPackageError("tampered", `the package lacks ${missing.length} file(s) of its signed manifest: ${missing.slice(0, 5).join(", ")}`);
  return { manifest, files, signedBy: signer };
}

function malformed(message: string, cause?: unknown): AgentPackageError {
  return new AgentPackageError("malformed", message, cause === undefined ? undefined : { cause });
}

// Regular files by canonical path. Folder entries only make `tar x` create folders; a
// root entry ("./") and a leading "./" (as `tar -C dir .` writes) are accepted.
function fileEntries(raw: TarEntry[]): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  const folders = new Set<string>();
  for (const e of raw) {
    const path = e.path.replace(/^\.\//, "").replace(/\/$/, "");
    if (e.type === "directory" && (path === "" || path === ".")) continue;
    if (!isPackagePath(path)) throw malformed(`entry ${JSON.stringify(e.path.slice(0, 200))} is not a canonical relative path inside the package`);
    if (files.has(path) || folders.has(path)) throw malformed(`entry '${path}' appears twice in the package`);
    if (e.type === "directory") folders.add(path);
    else if (e.type === "file") files.set(path, e.data);
    else throw malformed(`entry '${path}' is a ${e.type === "other" ? `tar entry of type '${e.typeflag.replace(/\0/g, "\\0")}'` : e.type}; an agent package holds only files and folders`);
    if (files.size + folders.size > AGENT_PACKAGE_LIMITS.files) throw malformed(`the package has more than ${AGENT_PACKAGE_LIMITS.files} entries`);
  }
  // A file may not stand where another entry needs a folder: unpacking would fail or
  // write through it.
  for (const path of [...files.keys(), ...folders]) {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join("/");
      if (files.has(parent)) throw malformed(`entry '${path}' is inside '${parent}', which is a file`);
    }
  }
  return files;
}

function readSignature(data: Uint8Array): Uint8Array {
  if (data.length > AGENT_PACKAGE_LIMITS.signatureBytes) throw new AgentPackageError("unsigned", `${AGENT_SIGNATURE_FILE} is larger than ${AGENT_PACKAGE_LIMITS.signatureBytes} bytes`);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(data).trim();
  } catch {
    throw new AgentPackageError("unsigned", `${AGENT_SIGNATURE_FILE} is not text (base64 of an Ed25519 signature is expected)`);
  }
  let sig: Uint8Array;
  try {
    sig = base64Decode(text, AGENT_SIGNATURE_FILE);
  } catch (e) {
    throw new AgentPackageError("unsigned", (e as Error).message);
  }
  if (sig.length !== 64) throw new AgentPackageError("unsigned", `${AGENT_SIGNATURE_FILE} holds ${sig.length} bytes; an Ed25519 signature is 64`);
  return sig;
}

async function verifyingKey(data: Uint8Array, signature: Uint8Array, trusted: readonly TrustedKey[]): Promise<TrustedKey | null> {
  for (const t of trusted) {
    if (await crypto.subtle.verify(ED25519, t.key, signature as Uint8Array<ArrayBuffer>, data as Uint8Array<ArrayBuffer>)) return t;
  }
  return null;
}

// Ed25519 alone cannot tell "another key" from "altered": the manifest names its signer
// (signedBy), which settles it when it names a trusted key. If the manifest is unreadable
// after tampering, "altered or untrusted" is all that can be said.
function signatureRefusal(manifestBytes: Uint8Array, trusted: readonly TrustedKey[]): AgentPackageError {
  let signedBy: unknown;
  try {
    signedBy = (JSON.parse(new TextDecoder().decode(manifestBytes)) as { signedBy?: unknown }).signedBy;
  } catch {
    signedBy = undefined;
  }
  const known = trusted.map((t) => t.fingerprint);
  if (typeof signedBy === "string" && known.includes(signedBy)) {
    return new AgentPackageError("tampered", `${AGENT_MANIFEST_FILE} was altered after signing: its signature does not verify with the trusted key it names (${signedBy})`);
  }
  if (typeof signedBy === "string" && SHA256_HEX.test(signedBy)) {
    return new AgentPackageError("untrusted", `the package is signed by a key this server does not trust (fingerprint ${signedBy}); trusted: ${known.join(", ")}`);
  }
  return new AgentPackageError("untrusted", `the signature does not verify with any trusted release key: signed by another key, or ${AGENT_MANIFEST_FILE} was altered after signing`);
}

function parseManifest(bytes: Uint8Array): AgentManifest {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes));
  } catch (e) {
    throw malformed(`${AGENT_MANIFEST_FILE} is not valid UTF-8 JSON: ${(e as Error).message}`);
  }
  const parsed = agentManifest.safeParse(value);
  if (!parsed.success) throw malformed(`${AGENT_MANIFEST_FILE}: ${describeZodError(parsed.error)}`);
  return parsed.data;
}

// ---- base64 (atob/btoa exist in both runtimes) -----------------------------------

function base64Decode(text: string, what: string): Uint8Array {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) throw new ReleaseKeyError(`${what} is not base64`);
  const bin = atob(text);
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function base64Encode(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}
