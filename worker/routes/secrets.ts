// /api/v1/secrets: named values for steps (docs/api.md §Secrets). A value goes in once
// and never comes out of this API again: answers carry names and times only, and D1
// holds the value sealed under OUTPOST_SECRETS_KEY (worker/secrets-crypto.ts). Agents
// get values for one step at a time (worker/routes/step-secrets.ts).
import { createSecretBody, secretName, type SecretView } from "../../schema/api.ts";
import { json } from "../../schema/http.ts";
import { deleteSecret, listSecrets, upsertSecret } from "../../d1/secrets.ts";
import type { ApiRequest } from "../api-request.ts";
import { requireApiRole } from "../auth.ts";
import { parseWith, readJson } from "../body.ts";
import type { Env } from "../env.ts";
import { HttpError } from "../http-errors.ts";
import { importSecretsKey, sealSecret, SecretsKeyError } from "../secrets-crypto.ts";

// Without a usable key the server can neither seal nor open, so every secrets endpoint
// says so: a 503 (the server's configuration), never a 4xx the caller could fix. The
// detail (unset, wrong length, …) goes to the log, never the key itself.
export async function requireSecretsKey(env: Env): Promise<CryptoKey> {
  try {
    return await importSecretsKey(env.OUTPOST_SECRETS_KEY);
  } catch (e) {
    if (!(e instanceof SecretsKeyError)) throw e;
    console.error(`secrets: ${e.detail}`);
    throw new HttpError(503, e.message);
  }
}

// 201 whether the name is new or replaced: the caller asked for "NAME = value" either way.
export async function createSecret(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "admin");
  const body = await readJson(request, createSecretBody);
  const key = await requireSecretsKey(env);
  await upsertSecret(env, body.name, await sealSecret(key, body.name, body.value), Date.now());
  return json({ name: body.name }, 201);
}

export async function getSecrets(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "viewer");
  await requireSecretsKey(env);
  const rows = await listSecrets(env);
  const list: SecretView[] = rows.map((r) => ({ name: r.name, updatedAt: new Date(r.updatedAt).toISOString() }));
  return json({ secrets: list });
}

// A step that names a deleted secret fails when it starts (422 on the agent's fetch).
export async function removeSecret(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "admin");
  const name = parseWith(secretName, request.params.name, "secret name");
  await requireSecretsKey(env);
  if (!(await deleteSecret(env, name))) throw new HttpError(404, `secret ${name} not found`);
  return new Response(null, { status: 204 });
}
