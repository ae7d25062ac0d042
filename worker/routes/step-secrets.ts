// POST /agent/v1/steps/:stepId/secrets (schema/agent-api.ts): the values of the
// secrets one step names, for the agent that runs it, while it runs. The agent asks
// when it starts the step and keeps them in memory only; the names come from the
// step's own definition (fixed when the deployment was created), never from the
// request, so a credential opens nothing beyond its agent's active steps.
import { z } from "zod";
import type { stepSecretsResponse } from "../../schema/agent-api.ts";
import { json } from "../../schema/http.ts";
import { ACTIVE_STEP_STATUSES } from "../../schema/steps.ts";
import { agentStepSecretsRow, sealedSecrets } from "../../d1/secrets.ts";
import type { ApiRequest } from "../api-request.ts";
import { requireAgent } from "../auth.ts";
import type { Env } from "../env.ts";
import { HttpError } from "../http-errors.ts";
import { openSecret, SecretOpenError } from "../secrets-crypto.ts";
import { requireSecretsKey } from "./secrets.ts";

// Only the `secrets` field matters here; the rest of a definition (a plug-in step's
// package, inputs, …) is someone else's and is let through unread.
const stepDefinition = z.object({ secrets: z.array(z.string()).optional() }).passthrough();

// The stored definition is the server's own writing: if it does not parse, that is a
// server bug (a 500 with the step named in the log), not the agent's mistake.
export function namedSecrets(stepId: string, definition: string | null): string[] {
  if (definition === null) return [];
  let value: unknown;
  try {
    value = JSON.parse(definition);
  } catch (e) {
    throw new Error(`step ${stepId}: its stored definition is not JSON`, { cause: e });
  }
  const parsed = stepDefinition.safeParse(value);
  if (!parsed.success) throw new Error(`step ${stepId}: its stored definition has no usable 'secrets' list`, { cause: parsed.error });
  return [...new Set(parsed.data.secrets ?? [])];
}

export async function getStepSecrets(request: ApiRequest, env: Env): Promise<Response> {
  const agent = await requireAgent(request, env);
  const stepId = request.params.stepId;
  if (!stepId || stepId.length > 200) throw new HttpError(400, "invalid step id");
  const step = await agentStepSecretsRow(env, stepId, agent.id);
  if (!step) throw new HttpError(404, `step ${stepId} not found`);
  if (!(ACTIVE_STEP_STATUSES as readonly string[]).includes(step.status)) {
    throw new HttpError(410, `step ${stepId} has ended (${step.status}); its secrets are no longer given out`);
  }
  const names = namedSecrets(stepId, step.definition);
  const key = await requireSecretsKey(env);
  const sealed = await sealedSecrets(env, names);
  const missing = names.filter((n) => !sealed.has(n));
  if (missing.length > 0) throw new HttpError(422, `secret(s) not found: ${missing.join(", ")}`, { missing });
  // A value the current key cannot open (the key was changed, the row copied) is as good
  // as missing for this step: it fails naming it instead of waiting for ever.
  const entries: (readonly [string, string])[] = [];
  const unreadable: string[] = [];
  for (const n of names) {
    try {
      entries.push([n, await openSecret(key, n, sealed.get(n)!)] as const);
    } catch (e) {
      if (!(e instanceof SecretOpenError)) throw e;
      console.error(`step ${stepId}: ${e.message}`);
      unreadable.push(n);
    }
  }
  if (unreadable.length > 0) {
    throw new HttpError(422, `secret(s) cannot be opened with the server's OUTPOST_SECRETS_KEY (was it changed? set them again): ${unreadable.join(", ")}`, { missing: unreadable });
  }
  // fromEntries defines own properties, so even a secret named "__proto__" is carried.
  const body: z.infer<typeof stepSecretsResponse> = { secrets: Object.fromEntries(entries) };
  // Values must not be kept by any cache between here and the agent.
  return json(body, 200, { "cache-control": "no-store" });
}
