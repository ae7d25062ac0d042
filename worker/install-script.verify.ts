// The package verifier that install.sh carries (worker/install-script.sh.ts writes it to
// a temporary .mjs and runs it with the node it checked). The installing machine has
// only Node, no checkout, so this is schema/agent-package.ts's rules again on Node's own
// modules: the manifest's Ed25519 signature with one of the trusted keys (WebCrypto, as
// there), every file's sha256, no file missing, none extra; only files and folders with
// canonical paths. test/e2e/install-script.test.ts holds the two to the same packages.
//
//   node verify.mjs package <file.tar.gz> <keys.pem> <version>   before unpacking
//   node verify.mjs tree <folder> <keys.pem> <version>           what `tar` unpacked
//
// Two checks because the bytes are unpacked by the system's `tar`, not by this program:
// the first refuses a bad package before anything touches the disk, and accepts only
// plain ustar files and folders (no links, no pax or GNU headers, no sizes on folders),
// which every tar reads the same way; the second checks that what landed on disk is
// exactly the signed set, whatever `tar` did. Exit 0: verified; 1: refused (a line saying
// why on stderr); 2: bad invocation.
//
// Kept free of backticks and dollar-brace (the script embeds it in a template literal,
// verbatim) and of a line reading OUTPOST_VERIFY_EOF (its heredoc's end).
export const VERIFY_PROGRAM = String.raw`// Outpost agent package verifier, written by install.sh (see the script for the source).
import { createHash, webcrypto } from "node:crypto";
import { lstatSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";

const MANIFEST = "outpost-agent-manifest.json";
const SIGNATURE = "outpost-agent-manifest.sig";
const ENTRY = "bin/outpost-agent.mjs"; // what install.sh runs
const LIMITS = { packageBytes: 32 * 1024 * 1024, unpackedBytes: 64 * 1024 * 1024, files: 2000, manifestBytes: 512 * 1024, signatureBytes: 1024 };
const SEGMENT = /^(?!\.{1,2}$)[A-Za-z0-9._@+-]{1,128}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;
const MANIFEST_KEYS = ["format", "version", "platforms", "node", "entry", "signedBy", "files"];

class Refusal extends Error {
  constructor(problem, message) {
    super(message);
    this.problem = problem;
  }
}
const refuse = (problem, message) => {
  throw new Refusal(problem, message);
};
const isPackagePath = (p) => p.length <= 512 && p.split("/").every((s) => SEGMENT.test(s));
const sha256 = (data) => createHash("sha256").update(data).digest("hex");
const quote = (s) => JSON.stringify(String(s).slice(0, 200));

function strictBase64(text, what) {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) throw new Error(what + " is not base64");
  return Buffer.from(text, "base64");
}

async function importKeys(pem) {
  const keys = [];
  const re = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END ([A-Z0-9 ]+)-----/g;
  for (const m of pem.matchAll(re)) {
    if (m[1] !== "PUBLIC KEY" || m[3] !== "PUBLIC KEY") throw new Error("the release keys hold a '" + m[1] + "' block; only 'PUBLIC KEY' blocks (SPKI) are expected");
    const der = strictBase64(m[2].replace(/\s+/g, ""), "a PUBLIC KEY block");
    let key;
    try {
      key = await webcrypto.subtle.importKey("spki", der, { name: "Ed25519" }, false, ["verify"]);
    } catch (e) {
      throw new Error("release key " + (keys.length + 1) + " is not an Ed25519 SPKI key: " + e.message);
    }
    keys.push({ key, fingerprint: sha256(der) });
  }
  if (keys.length === 0) throw new Error("no '-----BEGIN PUBLIC KEY-----' block in the release keys");
  return keys;
}

// ---- the package's bytes ---------------------------------------------------------

function octal(h, offset, length, what, at) {
  let s = "";
  for (const b of h.subarray(offset, offset + length)) {
    if (b === 0) break;
    s += String.fromCharCode(b);
  }
  s = s.trim();
  if (!/^[0-7]*$/.test(s)) refuse("malformed", "tar header at byte " + at + ": the " + what + " field is not an octal number");
  return s === "" ? 0 : parseInt(s, 8);
}

function field(h, offset, length) {
  const f = h.subarray(offset, offset + length);
  const end = f.indexOf(0);
  return (end === -1 ? f : f.subarray(0, end)).toString("latin1"); // paths are checked to be ASCII
}

function checksum(h, at) {
  let sum = 0;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : h[i];
    sum += b;
    signed += b > 127 ? b - 256 : b;
  }
  const stored = octal(h, 148, 8, "checksum", at);
  if (stored !== sum && stored !== signed) refuse("malformed", "tar header at byte " + at + ": checksum mismatch (not a tar archive, or a damaged one)");
}

// Regular files by canonical path (folders only make tar create folders).
function packageFiles(file) {
  const bytes = readFileSync(file);
  if (bytes.length > LIMITS.packageBytes) refuse("malformed", "the package is larger than " + LIMITS.packageBytes + " bytes");
  if (bytes.length < 18 || bytes[0] !== 0x1f || bytes[1] !== 0x8b) refuse("malformed", "the package is not a gzip file (a .tar.gz is expected)");
  let tar;
  try {
    tar = gunzipSync(bytes, { maxOutputLength: LIMITS.unpackedBytes });
  } catch (e) {
    refuse("malformed", "the package is not valid gzip data, or unpacks to more than " + LIMITS.unpackedBytes + " bytes: " + e.message);
  }
  if (tar.length !== bytes.readUInt32LE(bytes.length - 4)) refuse("malformed", "the package is not a single gzip stream (its size trailer does not match its data)");
  const files = new Map();
  const folders = new Set();
  let at = 0;
  for (;;) {
    if (at + 512 > tar.length) refuse("malformed", "truncated tar archive: no end-of-archive marker");
    const h = tar.subarray(at, at + 512);
    if (h.every((b) => b === 0)) break;
    checksum(h, at);
    const flag = String.fromCharCode(h[156]);
    const posix = field(h, 257, 6) === "ustar" && h[262] === 0;
    const prefix = posix ? field(h, 345, 155) : "";
    const name = field(h, 0, 100);
    const raw = prefix ? prefix + "/" + name : name;
    const size = octal(h, 124, 12, "size", at);
    const isDir = flag === "5" || (flag === "\0" && raw.endsWith("/"));
    if (!isDir && flag !== "0" && flag !== "\0") refuse("malformed", "entry " + quote(raw) + " is a tar entry of type " + quote(flag) + "; an agent package holds only files and folders, as plain ustar entries");
    if (isDir && size !== 0) refuse("malformed", "folder entry " + quote(raw) + " claims " + size + " bytes of data");
    const data = tar.subarray(at + 512, at + 512 + size);
    if (data.length !== size) refuse("malformed", "truncated tar archive: the data of " + quote(raw) + " runs past its end");
    at += 512 + Math.ceil(size / 512) * 512;
    const path = raw.replace(/^\.\//, "").replace(/\/$/, "");
    if (isDir && (path === "" || path === ".")) continue;
    if (!isPackagePath(path)) refuse("malformed", "entry " + quote(raw) + " is not a canonical relative path inside the package");
    if (files.has(path) || folders.has(path)) refuse("malformed", "entry '" + path + "' appears twice in the package");
    if (isDir) folders.add(path);
    else files.set(path, data);
    if (files.size + folders.size > LIMITS.files) refuse("malformed", "the package has more than " + LIMITS.files + " entries");
  }
  for (const path of [...files.keys(), ...folders]) {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      if (files.has(parts.slice(0, i).join("/"))) refuse("malformed", "entry '" + path + "' is inside '" + parts.slice(0, i).join("/") + "', which is a file");
    }
  }
  return files;
}

// ---- what tar unpacked -------------------------------------------------------------

function treeFiles(root) {
  const files = new Map();
  const visit = (dir, rel) => {
    for (const name of readdirSync(dir).sort()) {
      const path = rel ? rel + "/" + name : name;
      const st = lstatSync(join(dir, name));
      if (st.isDirectory()) visit(join(dir, name), path);
      else if (st.isFile()) files.set(path, readFileSync(join(dir, name)));
      else refuse("tampered", "'" + path + "' in the unpacked package is neither a file nor a folder");
      if (files.size > LIMITS.files) refuse("malformed", "the unpacked package has more than " + LIMITS.files + " files");
    }
  };
  visit(root, "");
  return files;
}

// ---- the signed manifest, and every file against it --------------------------------

async function verify(files, keys, version) {
  const manifestBytes = files.get(MANIFEST);
  if (!manifestBytes) refuse("malformed", "no " + MANIFEST + " at the package root: this is not an agent package");
  if (manifestBytes.length > LIMITS.manifestBytes) refuse("malformed", MANIFEST + " is larger than " + LIMITS.manifestBytes + " bytes");
  const sigFile = files.get(SIGNATURE);
  if (!sigFile) refuse("unsigned", "the package is not signed: no " + SIGNATURE + " at its root");
  if (sigFile.length > LIMITS.signatureBytes) refuse("unsigned", SIGNATURE + " is larger than " + LIMITS.signatureBytes + " bytes");
  let signature;
  try {
    signature = strictBase64(sigFile.toString("utf8").trim(), SIGNATURE);
  } catch (e) {
    refuse("unsigned", e.message);
  }
  if (signature.length !== 64) refuse("unsigned", SIGNATURE + " holds " + signature.length + " bytes; an Ed25519 signature is 64");

  let signer = null;
  for (const k of keys) {
    if (await webcrypto.subtle.verify({ name: "Ed25519" }, k.key, signature, manifestBytes)) {
      signer = k;
      break;
    }
  }
  let manifest;
  try {
    manifest = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(manifestBytes));
  } catch (e) {
    manifest = null;
  }
  const known = keys.map((k) => k.fingerprint);
  if (!signer) {
    const by = manifest && typeof manifest.signedBy === "string" ? manifest.signedBy : null;
    if (by && known.includes(by)) refuse("tampered", MANIFEST + " was altered after signing: its signature does not verify with the trusted key it names (" + by + ")");
    if (by && SHA256_HEX.test(by)) refuse("untrusted", "the package is signed by a key not among the trusted release keys (fingerprint " + by + "); trusted: " + known.join(", "));
    refuse("untrusted", "the signature does not verify with any trusted release key: signed by another key, or " + MANIFEST + " was altered after signing");
  }

  const bad = (what) => refuse("malformed", MANIFEST + ": " + what);
  if (!manifest || typeof manifest !== "object" || Array.isArray(manifest)) bad("not a JSON object");
  for (const k of Object.keys(manifest)) if (!MANIFEST_KEYS.includes(k)) bad("unknown field " + quote(k));
  if (manifest.format !== 1) bad("format " + quote(manifest.format) + " is not 1, the one this installer reads");
  if (typeof manifest.version !== "string" || !SEMVER.test(manifest.version)) bad("version is not semver");
  if (manifest.version !== version) refuse("tampered", "the package is version " + manifest.version + ", not " + version + ", the version the server announced");
  if (!Array.isArray(manifest.platforms) || manifest.platforms.length === 0 || !manifest.platforms.every((p) => typeof p === "string")) bad("platforms is not a list of platforms");
  if (manifest.entry !== ENTRY) bad("entry is " + quote(manifest.entry) + "; this installer runs " + ENTRY);
  if (!manifest.files || typeof manifest.files !== "object" || Array.isArray(manifest.files)) bad("files is not an object");
  const listed = new Map(Object.entries(manifest.files));
  for (const [p, h] of listed) {
    if (!isPackagePath(p) || p === MANIFEST || p === SIGNATURE) bad("files lists " + quote(p) + ", not a package file path");
    if (typeof h !== "string" || !SHA256_HEX.test(h)) bad("the sha256 of '" + p + "' is not 64 lower-case hex digits");
  }
  if (!listed.has(ENTRY)) bad("entry is not one of the files");

  for (const [path, data] of files) {
    if (path === MANIFEST || path === SIGNATURE) continue;
    const expected = listed.get(path);
    if (expected === undefined) refuse("tampered", "file '" + path + "' is not listed in the signed manifest");
    const actual = sha256(data);
    if (actual !== expected) refuse("tampered", "file '" + path + "' was altered after signing: its sha256 is " + actual + ", the signed manifest says " + expected);
  }
  const missing = [...listed.keys()].filter((p) => !files.has(p));
  if (missing.length > 0) refuse("tampered", "the package lacks " + missing.length + " file(s) of its signed manifest: " + missing.slice(0, 5).join(", "));

  const here = process.platform + "-" + process.arch;
  if (!manifest.platforms.some((p) => p === here || p.startsWith(here + "-"))) refuse("platform", "this package runs on " + manifest.platforms.join(", ") + "; this machine is " + here);
  return { manifest, signer };
}

const [mode, target, keysFile, version] = process.argv.slice(2);
if ((mode !== "package" && mode !== "tree") || !target || !keysFile || !version) {
  process.stderr.write("usage: node verify.mjs package|tree <file.tar.gz|folder> <keys.pem> <version>\n");
  process.exit(2);
}
try {
  const keys = await importKeys(readFileSync(keysFile, "utf8"));
  const files = mode === "package" ? packageFiles(target) : treeFiles(target);
  const { manifest, signer } = await verify(files, keys, version);
  process.stdout.write("verified outpost-agent " + manifest.version + " (" + (files.size - 2) + " files, " + mode + "), signed by release key " + signer.fingerprint + "\n");
} catch (e) {
  if (e instanceof Refusal) process.stderr.write("the package is refused (" + e.problem + "): " + e.message + "\n");
  else process.stderr.write("cannot verify the package: " + e.message + "\n");
  process.exit(1);
}
`;
