// Release key pinning (docs/agent-lifecycle.md, "Key pinning"). `register` stores the
// server's trusted release keys in the home (release-keys.pem, 0600 like the
// credential); from then on this agent accepts only agent packages signed by one of
// those keys, whoever serves the bytes (the server, a relay, a cache). The server's
// keys of later days never count: a server — or whoever took it over — that starts
// trusting another key cannot get this agent to run what that key signs. To pin other
// keys, register the machine again (register --replace).
import { mkdirSync, readFileSync } from "node:fs";
import { AgentPackageError, importTrustedKeys, readAgentPackage, type AgentPackage, type TrustedKey } from "../schema/agent-package.ts";
import { AgentError } from "./errors.ts";
import { homePaths, writeFileAtomic } from "./settings.ts";

// The home has no usable pinned key: nothing can be verified, so nothing is installed.
export class PinnedKeysError extends AgentError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, context, options);
    this.name = "PinnedKeysError";
  }
}

export type PinResult = { pinned: true; fingerprints: string[] } | { pinned: false; warning: string };

const CANNOT_UPGRADE = "this agent cannot be upgraded until it is registered again (register --replace, into a new home) with a server that has OUTPOST_RELEASE_PUBLIC_KEYS";

// Called by `register` with the register answer's keys, before the credential is written
// (a home with a credential is a registered agent; it should hold its keys by then).
// Keys the agent cannot read are not pinned: pinning them would only fail later, at the
// first upgrade, further from the cause. Both cases register anyway, with a warning:
// the agent runs fine, it only cannot be upgraded.
export async function pinReleaseKeys(home: string, pem: string): Promise<PinResult> {
  if (pem.trim() === "") {
    return { pinned: false, warning: `the server trusts no release key (OUTPOST_RELEASE_PUBLIC_KEYS is not set), so none was pinned: ${CANNOT_UPGRADE}` };
  }
  let keys: TrustedKey[];
  try {
    keys = await importTrustedKeys(pem);
  } catch (e) {
    return { pinned: false, warning: `the server's release keys cannot be read (${(e as Error).message}), so none was pinned: ${CANNOT_UPGRADE}` };
  }
  mkdirSync(homePaths(home).home, { recursive: true, mode: 0o700 });
  writeFileAtomic(homePaths(home).releaseKeys, await canonicalPem(keys), 0o600);
  return { pinned: true, fingerprints: keys.map((k) => k.fingerprint) };
}

// One standard PEM block per key: the server's variable may have its line breaks as
// spaces, and the home's file should read as what it is (openssl, an operator's eyes).
async function canonicalPem(keys: TrustedKey[]): Promise<string> {
  let out = "";
  for (const { key } of keys) {
    const der = Buffer.from((await crypto.subtle.exportKey("spki", key)) as ArrayBuffer);
    out += `-----BEGIN PUBLIC KEY-----\n${der.toString("base64").replace(/.{1,64}/g, "$&\n")}-----END PUBLIC KEY-----\n`;
  }
  return out;
}

export async function readPinnedKeys(home: string): Promise<TrustedKey[]> {
  const path = homePaths(home).releaseKeys;
  let pem: string;
  try {
    pem = readFileSync(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") {
      throw new PinnedKeysError(`no release key is pinned in ${path} (the server had none when this agent registered, or the agent registered before keys were pinned): ${CANNOT_UPGRADE}`, { path });
    }
    throw new PinnedKeysError(`cannot read the pinned release keys ${path}: ${(e as Error).message}`, { path }, { cause: e });
  }
  try {
    return await importTrustedKeys(pem);
  } catch (e) {
    throw new PinnedKeysError(`the pinned release keys in ${path} are unusable: ${(e as Error).message}`, { path }, { cause: e });
  }
}

// What the upgrade flow calls on downloaded bytes before unpacking them: the shared
// verifier (schema/agent-package.ts) with the pinned keys only — never the keys the
// server trusts today, never a key named by the package.
export async function verifyAgentPackage(home: string, bytes: Uint8Array): Promise<AgentPackage> {
  const keys = await readPinnedKeys(home);
  try {
    return await readAgentPackage(bytes, keys);
  } catch (e) {
    if (!(e instanceof AgentPackageError) || e.problem !== "untrusted") throw e;
    // The shared message speaks for a server ("a key this server does not trust").
    const pinned = keys.map((k) => k.fingerprint).join(", ");
    throw new AgentPackageError("untrusted", `the package is not signed by a release key this agent pinned when it registered (pinned: ${pinned}, in ${homePaths(home).releaseKeys}): ${e.message}`, { cause: e });
  }
}
