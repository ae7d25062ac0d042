// Where a local server keeps its state, its admin token, its secrets key and its release key.
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

export type LocalConfig = {
  stateDir: string;
  port: number;
  adminToken: string;
  tokenWasGenerated: boolean;
  secretsKey: string;
  releasePublicKeys: string; // SPKI PEM(s) the server trusts for agent packages
};

// The release key pair in the state dir (docs/agent-lifecycle.md): the private half signs
// agent packages (npm run agent:package), the public half is what the server trusts.
export const RELEASE_KEY_FILE = "release-key.pem";
export const RELEASE_PUBLIC_KEY_FILE = "release-key.pub.pem";

export function localConfig(env: NodeJS.ProcessEnv = process.env): LocalConfig {
  const stateDir = resolve(env.OUTPOST_STATE_DIR || ".outpost");
  const port = Number(env.PORT || 8787);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`PORT must be a TCP port number, got ${JSON.stringify(env.PORT)}`);
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const { token, generated } = adminToken(stateDir, env.OUTPOST_ADMIN_TOKEN);
  return {
    stateDir,
    port,
    adminToken: token,
    tokenWasGenerated: generated,
    secretsKey: secretsKey(stateDir, env.OUTPOST_SECRETS_KEY),
    releasePublicKeys: releasePublicKeys(stateDir, env.OUTPOST_RELEASE_PUBLIC_KEYS),
  };
}

// OUTPOST_ADMIN_TOKEN wins; otherwise the token generated on the first start is kept in the state dir.
function adminToken(stateDir: string, fromEnv: string | undefined): { token: string; generated: boolean } {
  if (fromEnv) return { token: fromEnv, generated: false };
  const file = join(stateDir, "admin-token");
  if (existsSync(file)) return { token: readFileSync(file, "utf8").trim(), generated: false };
  const token = "opa_" + randomBytes(32).toString("base64url");
  writeFileSync(file, token + "\n", { mode: 0o600 });
  return { token, generated: true };
}

// The key that seals secrets in D1 (worker/secrets-crypto.ts): OUTPOST_SECRETS_KEY wins;
// otherwise one is generated on the first start and kept, like the admin token, because
// a new key on every start would make every stored secret unreadable.
function secretsKey(stateDir: string, fromEnv: string | undefined): string {
  if (fromEnv) return fromEnv;
  const file = join(stateDir, "secrets-key");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  const key = randomBytes(32).toString("base64");
  writeFileSync(file, key + "\n", { mode: 0o600 });
  return key;
}

// OUTPOST_RELEASE_PUBLIC_KEYS wins (then no key pair is made here); otherwise an Ed25519
// pair is generated on the first start and kept, like the admin token, so that packages
// built with it stay trusted across restarts.
function releasePublicKeys(stateDir: string, fromEnv: string | undefined): string {
  if (fromEnv) return fromEnv;
  const privateFile = join(stateDir, RELEASE_KEY_FILE);
  const publicFile = join(stateDir, RELEASE_PUBLIC_KEY_FILE);
  if (existsSync(privateFile) && existsSync(publicFile)) return readFileSync(publicFile, "utf8");
  if (existsSync(privateFile) !== existsSync(publicFile)) {
    throw new Error(`${existsSync(privateFile) ? publicFile : privateFile} is missing beside its other half; restore it, or remove both to generate a new release key pair`);
  }
  const { privateKey, publicKey } = generateKeyPairSync("ed25519", {
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
    publicKeyEncoding: { type: "spki", format: "pem" },
  });
  writeFileSync(privateFile, privateKey, { mode: 0o600 });
  writeFileSync(publicFile, publicKey, { mode: 0o644 });
  return publicKey;
}
