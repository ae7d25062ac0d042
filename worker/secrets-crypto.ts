// Secrets at rest (docs/api.md §Secrets): AES-256-GCM under OUTPOST_SECRETS_KEY, a
// Worker secret, so D1 (and its backups and exports) never holds a value in clear.
// `sealed` = base64(12-byte random IV ‖ ciphertext ‖ 16-byte tag), with the secret's
// name as additional data: a sealed value copied under another name does not open.
// Pure WebCrypto, no I/O: the routes decide what an error means to the caller.

const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;

export const SECRETS_KEY_ERROR = "secrets are not available: OUTPOST_SECRETS_KEY is not set (or is not base64 of 32 bytes)";

// The server's configuration is missing or wrong: never the caller's fault (a 503).
export class SecretsKeyError extends Error {
  // What is wrong with the setting, for the server's log; never the setting itself.
  readonly detail: string;
  constructor(detail: string, cause?: unknown) {
    super(SECRETS_KEY_ERROR, cause === undefined ? undefined : { cause });
    this.name = "SecretsKeyError";
    this.detail = detail;
  }
}

// A sealed value that does not open: another key sealed it, it was sealed under another
// name, or it was altered. Carries the name only, never any part of the value.
export class SecretOpenError extends Error {
  readonly secretName: string;
  constructor(secretName: string, detail: string, cause?: unknown) {
    super(`secret '${secretName}' cannot be opened: ${detail}`, cause === undefined ? undefined : { cause });
    this.name = "SecretOpenError";
    this.secretName = secretName;
  }
}

// Standard base64 or base64url, padded or not: whatever `openssl rand -base64 32` or
// a base64url generator printed. A trailing newline from `wrangler secret put` piping is
// tolerated; anything else that is not exactly 32 bytes is refused.
export function decodeKeyText(text: string | undefined): Uint8Array {
  if (text === undefined || text.trim() === "") throw new SecretsKeyError("OUTPOST_SECRETS_KEY is not set");
  const t = text.trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(t) && !/^[A-Za-z0-9_-]+={0,2}$/.test(t)) {
    throw new SecretsKeyError("OUTPOST_SECRETS_KEY is not base64 or base64url");
  }
  let bytes: Uint8Array;
  try {
    bytes = fromBase64(t.replace(/-/g, "+").replace(/_/g, "/"));
  } catch (e) {
    throw new SecretsKeyError("OUTPOST_SECRETS_KEY does not decode as base64", e);
  }
  if (bytes.length !== KEY_BYTES) throw new SecretsKeyError(`OUTPOST_SECRETS_KEY decodes to ${bytes.length} bytes, not ${KEY_BYTES}`);
  return bytes;
}

// Importing is cheap but not free, and every request of an isolate uses the same key:
// keep the CryptoKey, keyed by the setting's text so a changed secret (a redeploy with a
// new key, or a test's own env) is imported afresh rather than served stale.
let cached: { text: string; key: Promise<CryptoKey> } | null = null;

export function importSecretsKey(text: string | undefined): Promise<CryptoKey> {
  if (cached && text !== undefined && cached.text === text) return cached.key;
  const raw = decodeKeyText(text); // throws before anything is cached
  const key = crypto.subtle.importKey("raw", raw, { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
  cached = { text: text!, key };
  // A rejected import must not stay cached for the isolate's life.
  key.catch(() => {
    if (cached?.key === key) cached = null;
  });
  return key;
}

export async function sealSecret(key: CryptoKey, name: string, value: string): Promise<string> {
  const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
  const ciphertext = new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: utf8(name) }, key, utf8(value)),
  );
  const out = new Uint8Array(IV_BYTES + ciphertext.length);
  out.set(iv, 0);
  out.set(ciphertext, IV_BYTES);
  return toBase64(out);
}

export async function openSecret(key: CryptoKey, name: string, sealed: string): Promise<string> {
  let bytes: Uint8Array;
  try {
    bytes = fromBase64(sealed);
  } catch (e) {
    throw new SecretOpenError(name, "the stored value is not base64", e);
  }
  if (bytes.length < IV_BYTES + TAG_BYTES) throw new SecretOpenError(name, `the stored value is ${bytes.length} bytes, too short to be sealed`);
  let plain: ArrayBuffer;
  try {
    plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: bytes.subarray(0, IV_BYTES), additionalData: utf8(name) },
      key,
      bytes.subarray(IV_BYTES),
    );
  } catch (e) {
    // GCM says only "does not authenticate": the key changed, the row was sealed under
    // another name, or it was altered. None of them can be told apart, on purpose.
    throw new SecretOpenError(name, "it does not authenticate under OUTPOST_SECRETS_KEY and this name (another key, another name, or altered)", e);
  }
  try {
    // ignoreBOM: a value that begins with U+FEFF keeps it; the default would strip it.
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(plain);
  } catch (e) {
    throw new SecretOpenError(name, "the opened value is not UTF-8", e);
  }
}

function utf8(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

function toBase64(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

function fromBase64(text: string): Uint8Array {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
