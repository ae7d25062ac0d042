// Where a local server keeps its state, its admin token and its secrets key.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

export type LocalConfig = { stateDir: string; port: number; adminToken: string; tokenWasGenerated: boolean; secretsKey: string };

export function localConfig(env: NodeJS.ProcessEnv = process.env): LocalConfig {
  const stateDir = resolve(env.OUTPOST_STATE_DIR || ".outpost");
  const port = Number(env.PORT || 8787);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`PORT must be a TCP port number, got ${JSON.stringify(env.PORT)}`);
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const { token, generated } = adminToken(stateDir, env.OUTPOST_ADMIN_TOKEN);
  return { stateDir, port, adminToken: token, tokenWasGenerated: generated, secretsKey: secretsKey(stateDir, env.OUTPOST_SECRETS_KEY) };
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
