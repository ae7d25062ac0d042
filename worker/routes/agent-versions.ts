// /api/v1/agent-versions (docs/agent-lifecycle.md): upload, list and pin agent packages,
// and /agent/v1/agent-versions/:version, where agents and install.sh download one. The
// bytes live in R2 (AGENT_PACKAGES), their row in D1 (d1/agent-versions.ts). A package is
// accepted only if schema/agent-package.ts verifies it with a key of
// OUTPOST_RELEASE_PUBLIC_KEYS; a version is immutable (same bytes 200, other bytes 409).
import { storeImmutable } from "../immutable-upload.ts";
import { z } from "zod";
import {
  agentPackageKey,
  currentAgentVersion,
  currentOf,
  findAgentVersion,
  insertAgentVersion,
  listAgentVersionRows,
  pinAgentVersion,
  unpinAgentVersion,
  type AgentVersionRow,
} from "../../d1/agent-versions.ts";
import { d1 } from "../../d1/db.ts";
import { AGENT_PACKAGE_LIMITS, AgentPackageError, importTrustedKeys, readAgentPackage, type AgentManifest, type TrustedKey } from "../../schema/agent-package.ts";
import { json } from "../../schema/http.ts";
import { semver } from "../../schema/plugin.ts";
import { sha256Hex } from "../../schema/plugin-package.ts";
import type { ApiRequest } from "../api-request.ts";
import { requireApiRole } from "../auth.ts";
import { parseWith, readBytes, readJson } from "../body.ts";
import type { Env } from "../env.ts";
import { HttpError } from "../http-errors.ts";

const PACKAGE_CONTENT_TYPE = "application/gzip";
const SHA256_HEADER = "x-content-sha256";
const VERSION_HEADER = "x-outpost-agent-version";
// The download route's alias for whatever version is current: install.sh knows no version.
const CURRENT = "current";

type UploadAnswer = { version: string; sha256: string; platforms: string[] };

export async function postAgentVersion(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "admin");
  const keys = await trustedKeys(env);
  const bytes = await readBytes(request, AGENT_PACKAGE_LIMITS.packageBytes, "agent package");
  const manifest = await verifiedManifest(bytes, keys);
  const sha256 = await sha256Hex(bytes);
  const answer: UploadAnswer = { version: manifest.version, sha256, platforms: manifest.platforms };
  const db = d1(env);

  const existing = await findAgentVersion(db, manifest.version);
  if (existing) return repeatOrConflict(existing, answer);

  const row: AgentVersionRow = { version: manifest.version, sha256, platforms: JSON.stringify(manifest.platforms), size: bytes.length, uploadedAt: Date.now(), pinnedAt: null };
  const stored = await storeImmutable({
    bucket: env.AGENT_PACKAGES,
    bytes,
    sha256,
    contentType: PACKAGE_CONTENT_TYPE,
    row,
    keyOf: agentPackageKey,
    insert: (r) => insertAgentVersion(db, r),
    find: () => findAgentVersion(db, manifest.version),
  });
  if (stored.inserted) return json(answer, 201);
  if (!stored.row) throw new Error(`agent version ${manifest.version}: the insert found a row that is now gone`);
  return repeatOrConflict(stored.row, answer);
}

async function verifiedManifest(bytes: Uint8Array, keys: TrustedKey[]): Promise<AgentManifest> {
  try {
    return (await readAgentPackage(bytes, keys)).manifest;
  } catch (e) {
    if (e instanceof AgentPackageError) throw new HttpError(422, `agent package refused (${e.problem}): ${e.message}`, { problem: e.problem });
    throw e;
  }
}

function repeatOrConflict(stored: AgentVersionRow, answer: UploadAnswer): Response {
  if (stored.sha256 === answer.sha256) return json(answer, 200);
  throw new HttpError(
    409,
    `agent version ${stored.version} already exists with other content (sha256 ${stored.sha256}); versions are immutable: build the changed agent with a new version`,
    { sha256: stored.sha256 },
  );
}

// Parsed once per isolate for a given value of the variable. A missing or malformed
// variable is the server's configuration, not the client's mistake: 503.
let cachedKeys: { pem: string; keys: Promise<TrustedKey[]> } | null = null;

async function trustedKeys(env: Env): Promise<TrustedKey[]> {
  const pem = env.OUTPOST_RELEASE_PUBLIC_KEYS;
  if (!pem || pem.trim() === "") {
    throw new HttpError(503, "this server trusts no release key, so it accepts no agent package: set OUTPOST_RELEASE_PUBLIC_KEYS (one or more SPKI PEM public keys)");
  }
  if (cachedKeys?.pem !== pem) cachedKeys = { pem, keys: importTrustedKeys(pem) };
  try {
    return await cachedKeys.keys;
  } catch (e) {
    console.error("OUTPOST_RELEASE_PUBLIC_KEYS cannot be used:", e);
    throw new HttpError(503, `OUTPOST_RELEASE_PUBLIC_KEYS cannot be used: ${(e as Error).message}`);
  }
}

function view(row: AgentVersionRow) {
  return { version: row.version, sha256: row.sha256, platforms: JSON.parse(row.platforms) as string[], size: row.size, uploadedAt: new Date(row.uploadedAt).toISOString() };
}

export async function listAgentVersions(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "viewer");
  const rows = await listAgentVersionRows(d1(env));
  const current = currentOf(rows);
  return json({ versions: rows.map(view), current: current?.row.version ?? null, pinned: current?.pinned ?? false });
}

// {"version": "1.2.0"} pins it; {"version": null} removes the pin (current = newest).
const pinBody = z.strictObject({ version: semver.nullable() });

export async function putCurrentAgentVersion(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "admin");
  const { version } = await readJson(request, pinBody);
  const db = d1(env);
  if (version === null) await unpinAgentVersion(db);
  else if (!(await pinAgentVersion(db, version, Date.now()))) throw new HttpError(404, `agent version ${version} not found; upload it first (POST /api/v1/agent-versions)`);
  const current = await currentAgentVersion(db);
  return json({ current: current?.row.version ?? null, pinned: current?.pinned ?? false });
}

// No credential: install.sh runs before the machine has one, and the registration token
// it carries is single-use and spent by `register`. A package holds no secret (the same
// code for every agent) and is signed: the agent and install.sh verify it against the
// keys they trust, so whoever serves or alters the bytes cannot get them run.
export async function downloadAgentVersion(request: ApiRequest, env: Env): Promise<Response> {
  const wanted = decoded(request.params.version);
  const db = d1(env);
  let row: AgentVersionRow | undefined;
  if (wanted === CURRENT) {
    row = (await currentAgentVersion(db))?.row;
    if (!row) throw new HttpError(404, "no agent version has been uploaded yet");
  } else {
    const version = parseWith(semver, wanted, "agent version");
    row = await findAgentVersion(db, version);
    if (!row) throw new HttpError(404, `agent version ${version} not found`);
  }
  const key = agentPackageKey(row);
  const object = await env.AGENT_PACKAGES.get(key);
  if (!object) throw new Error(`the package of agent version ${row.version} is missing from R2 (${key})`);
  return new Response(object.body, {
    headers: {
      "content-type": PACKAGE_CONTENT_TYPE,
      "content-length": String(object.size),
      "content-disposition": `attachment; filename="outpost-agent-${row.version}.tar.gz"`,
      [SHA256_HEADER]: row.sha256,
      [VERSION_HEADER]: row.version,
      // A version's bytes never change; "current" may move at any time.
      "cache-control": wanted === CURRENT ? "no-store" : "public, max-age=31536000, immutable",
    },
  });
}

// itty-router matches the raw path: a version's '+' may arrive as %2B.
function decoded(segment: string | undefined): string | undefined {
  if (segment === undefined) return undefined;
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, `invalid path segment '${segment}'`);
  }
}

// GET /agent/v1/agent-versions/current/meta → {version, sha256}: what install.sh learns
// before it downloads (it then asks for that version by name, so a pin moving meanwhile
// cannot mix two versions) and checks the bytes against. Public for the same reasons as
// the download.
export async function currentAgentVersionMeta(_request: ApiRequest, env: Env): Promise<Response> {
  const current = await currentAgentVersion(d1(env));
  if (!current) throw new HttpError(404, "no agent version has been uploaded yet: upload one first (npm run agent:package, then POST /api/v1/agent-versions)");
  return json({ version: current.row.version, sha256: current.row.sha256 }, 200, { "cache-control": "no-store" });
}

// GET /agent/v1/release-keys → the trusted release keys as SPKI PEM, one canonical block
// per key (the variable may have its line breaks as spaces): the keys install.sh checks
// a package's signature with. Public keys are no secret. They come over the same
// connection as the script and the package, so they protect against whoever serves or
// caches the package, not against the server itself (docs/agent-lifecycle.md, "Installing").
export async function getReleaseKeys(_request: ApiRequest, env: Env): Promise<Response> {
  const keys = await trustedKeys(env); // 503 when the server has none: its configuration
  const blocks: string[] = [];
  for (const { key } of keys) {
    const der = new Uint8Array((await crypto.subtle.exportKey("spki", key)) as ArrayBuffer);
    const b64 = btoa(String.fromCharCode(...der));
    blocks.push(`-----BEGIN PUBLIC KEY-----\n${b64.replace(/.{1,64}/g, "$&\n")}-----END PUBLIC KEY-----\n`);
  }
  return new Response(blocks.join(""), { headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" } });
}
