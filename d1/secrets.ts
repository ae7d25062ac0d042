// D1 side of secrets (docs/api.md §Secrets): rows hold only the sealed form
// (worker/secrets-crypto.ts); this module never sees a value in clear.
import { and, asc, eq, inArray } from "drizzle-orm";
import { deploymentSteps, secrets } from "../schema/d1.ts";
import type { StepStatus } from "../schema/steps.ts";
import { d1 } from "./db.ts";

type DbEnv = { DB: D1Database };

// D1 binds at most 100 parameters per statement; a step names at most 100 secrets
// (schema/agent-api.ts), but a chunk well under the limit costs nothing.
const NAMES_PER_QUERY = 50;

// One statement, so two concurrent writes of a name leave one whole row, never a
// duplicate-key error; created_at stays that of the first write.
export async function upsertSecret(env: DbEnv, name: string, sealed: string, now: number): Promise<void> {
  await d1(env)
    .insert(secrets)
    .values({ name, sealed, createdAt: now, updatedAt: now })
    .onConflictDoUpdate({ target: secrets.name, set: { sealed, updatedAt: now } })
    .run();
}

// Names and times only: listing never reads a sealed value.
export async function listSecrets(env: DbEnv): Promise<{ name: string; updatedAt: number }[]> {
  return d1(env).select({ name: secrets.name, updatedAt: secrets.updatedAt }).from(secrets).orderBy(asc(secrets.name)).all();
}

// True if a row was deleted.
export async function deleteSecret(env: DbEnv, name: string): Promise<boolean> {
  const res = await d1(env).delete(secrets).where(eq(secrets.name, name)).run();
  return res.meta.changes > 0;
}

// The sealed values of those of `names` that exist, by name.
export async function sealedSecrets(env: DbEnv, names: readonly string[]): Promise<Map<string, string>> {
  const unique = [...new Set(names)];
  const found = new Map<string, string>();
  for (let i = 0; i < unique.length; i += NAMES_PER_QUERY) {
    const rows = await d1(env)
      .select({ name: secrets.name, sealed: secrets.sealed })
      .from(secrets)
      .where(inArray(secrets.name, unique.slice(i, i + NAMES_PER_QUERY)))
      .all();
    for (const r of rows) found.set(r.name, r.sealed);
  }
  return found;
}

// A step as far as its secrets go, only if it belongs to `agentId`: another agent's
// step is indistinguishable from no step at all.
export async function agentStepSecretsRow(
  env: DbEnv,
  stepId: string,
  agentId: string,
): Promise<{ status: StepStatus; definition: string | null } | undefined> {
  return d1(env)
    .select({ status: deploymentSteps.status, definition: deploymentSteps.definition })
    .from(deploymentSteps)
    .where(and(eq(deploymentSteps.id, stepId), eq(deploymentSteps.agentId, agentId)))
    .get();
}
