// /api/v1/plugins (docs/plugins.md): upload, list, read and delete plug-in versions, and
// /agent/v1/plugins/:id/:version, where agents fetch a package. The package bytes live in
// R2 (PLUGINS), their row in D1 (d1/plugins.ts). A version is immutable: the same bytes
// again are a 200, other bytes a 409.
import { storeImmutable } from "../immutable-upload.ts";
import { deletePluginVersion, findPlugin, insertPlugin, listPluginSummaries, pluginObjectKey, type PluginRow } from "../../d1/plugins.ts";
import { d1 } from "../../d1/db.ts";
import { json } from "../../schema/http.ts";
import { PLUGIN_LIMITS, pluginId, semver, type PluginManifest } from "../../schema/plugin.ts";
import { PluginPackageError, readPluginPackage, sha256Hex } from "../../schema/plugin-package.ts";
import type { ApiRequest } from "../api-request.ts";
import { requireAgent, requireApiRole } from "../auth.ts";
import { parseWith, readBytes } from "../body.ts";
import type { Env } from "../env.ts";
import { HttpError } from "../http-errors.ts";

const PACKAGE_CONTENT_TYPE = "application/gzip";
const SHA256_HEADER = "x-content-sha256";

type UploadAnswer = { id: string; version: string; sha256: string; steps: string[] };

export async function postPlugin(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "admin");
  const bytes = await readBytes(request, PLUGIN_LIMITS.packageBytes, "plug-in package");
  const manifest = await validPackage(bytes);
  const sha256 = await sha256Hex(bytes);
  const answer: UploadAnswer = { id: manifest.id, version: manifest.version, sha256, steps: manifest.steps.map((s) => s.name) };
  const db = d1(env);

  const existing = await findPlugin(db, manifest.id, manifest.version);
  if (existing) return repeatOrConflict(existing, answer);

  // Bytes first, then the row that makes them visible: a row never names a missing
  // object. The object's key is this upload's own (pluginObjectKey), so losing a race
  // to another upload of the version costs only our own object.
  const row: PluginRow = {
    id: manifest.id,
    version: manifest.version,
    name: manifest.name,
    description: manifest.description,
    manifest: JSON.stringify(manifest),
    sha256,
    size: bytes.length,
    uploadedAt: Date.now(),
  };
  const stored = await storeImmutable({
    bucket: env.PLUGINS,
    bytes,
    sha256,
    contentType: PACKAGE_CONTENT_TYPE,
    row,
    keyOf: pluginObjectKey,
    insert: (r) => insertPlugin(db, r),
    find: () => findPlugin(db, manifest.id, manifest.version),
  });
  if (stored.inserted) return json(answer, 201);
  if (!stored.row) throw new HttpError(409, `plug-in ${manifest.id} version ${manifest.version} was deleted while this upload ran; upload it again`);
  return repeatOrConflict(stored.row, answer);
}

async function validPackage(bytes: Uint8Array): Promise<PluginManifest> {
  try {
    return (await readPluginPackage(bytes)).manifest;
  } catch (e) {
    if (e instanceof PluginPackageError) throw new HttpError(422, `invalid plug-in package: ${e.message}`);
    throw e;
  }
}

function repeatOrConflict(stored: PluginRow, answer: UploadAnswer): Response {
  if (stored.sha256 === answer.sha256) return json(answer, 200);
  throw new HttpError(
    409,
    `plug-in ${stored.id} version ${stored.version} already exists with other content (sha256 ${stored.sha256}); versions are immutable: give the changed plug-in a new version`,
    { sha256: stored.sha256 },
  );
}

export async function listPlugins(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "viewer");
  return json({ plugins: await listPluginSummaries(d1(env)) });
}

export async function getPlugin(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "viewer");
  const row = await storedVersion(request, env);
  const manifest = JSON.parse(row.manifest) as PluginManifest;
  return json({ ...manifest, sha256: row.sha256, size: row.size, uploadedAt: new Date(row.uploadedAt).toISOString() });
}

export async function deletePlugin(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "admin");
  const { id, version } = versionParams(request);
  const result = await deletePluginVersion(d1(env), id, version);
  if (result.outcome === "missing") throw notFound(id, version);
  if (result.outcome === "in-use") {
    const which = result.deploymentIds.length ? `: ${result.deploymentIds.join(", ")}` : "";
    throw new HttpError(409, `plug-in ${id} version ${version} is used by unfinished deployments${which}; delete it once they have ended`, { deployments: result.deploymentIds });
  }
  const key = pluginObjectKey(result.row);
  try {
    await env.PLUGINS.delete(key);
  } catch (e) {
    // The version is gone from D1, so from the API; the object is only unreferenced bytes.
    console.error(`plug-in ${id} version ${version} deleted, but its package ${key} could not be removed from R2:`, e);
  }
  return new Response(null, { status: 204 });
}

// The agent checks the bytes against the sha256 its command names before unpacking.
export async function downloadPlugin(request: ApiRequest, env: Env): Promise<Response> {
  await requireAgent(request, env);
  const row = await storedVersion(request, env);
  const key = pluginObjectKey(row);
  const object = await env.PLUGINS.get(key);
  if (!object) throw new Error(`the package of plug-in ${row.id} version ${row.version} is missing from R2 (${key})`);
  return new Response(object.body, {
    headers: { "content-type": PACKAGE_CONTENT_TYPE, "content-length": String(object.size), [SHA256_HEADER]: row.sha256 },
  });
}

async function storedVersion(request: ApiRequest, env: Env): Promise<PluginRow> {
  const { id, version } = versionParams(request);
  const row = await findPlugin(d1(env), id, version);
  if (!row) throw notFound(id, version);
  return row;
}

function versionParams(request: ApiRequest): { id: string; version: string } {
  return { id: parseWith(pluginId, decoded(request.params.id), "plug-in id"), version: parseWith(semver, decoded(request.params.version), "plug-in version") };
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

function notFound(id: string, version: string): HttpError {
  return new HttpError(404, `plug-in ${id} version ${version} not found`);
}
