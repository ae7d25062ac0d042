// Which agents a new deployment targets: named ones (each must exist) or every live
// agent carrying all the given tags (at least one must). The resolved agents are kept
// with the deployment; agents tagged later do not join it.
import { sql } from "drizzle-orm";
import type { CreateDeploymentBody } from "../../schema/api.ts";
import { LIMITS } from "../../schema/limits.ts";
import type { Db } from "../../d1/db.ts";
import { HttpError } from "../http-errors.ts";

export type ResolvedTarget = { id: string; name: string; properties: string /* JSON */ };

export async function resolveTargets(db: Db, body: CreateDeploymentBody): Promise<ResolvedTarget[]> {
  if (body.agents) return byName(db, body.agents);
  return byTags(db, body.targets!.tags);
}

async function byName(db: Db, names: string[]): Promise<ResolvedTarget[]> {
  const found = await db.all<ResolvedTarget>(
    sql`SELECT id, name, properties FROM agents
         WHERE revoked_at IS NULL AND name IN (SELECT value FROM json_each(${JSON.stringify(names)}))`,
  );
  const byName = new Map(found.map((a) => [a.name, a]));
  const unknown = names.filter((n) => !byName.has(n));
  if (unknown.length > 0) {
    throw new HttpError(422, `unknown agent${unknown.length > 1 ? "s" : ""}: ${unknown.join(", ")}`, { unknownAgents: unknown });
  }
  return names.map((n) => byName.get(n)!); // in the order given: the rollout's order
}

async function byTags(db: Db, tags: string[]): Promise<ResolvedTarget[]> {
  // Every wanted tag is among the agent's tags (tags are stored as a JSON array).
  const found = await db.all<ResolvedTarget>(
    sql`SELECT id, name, properties FROM agents a
         WHERE revoked_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM json_each(${JSON.stringify(tags)}) w
                            WHERE w.value NOT IN (SELECT t.value FROM json_each(a.tags) t))
         ORDER BY name
         LIMIT ${LIMITS.agentsPerDeployment + 1}`,
  );
  if (found.length === 0) throw new HttpError(422, `no agent carries the tag${tags.length > 1 ? "s" : ""} ${tags.join(", ")}`, { tags });
  if (found.length > LIMITS.agentsPerDeployment) {
    throw new HttpError(422, `more than ${LIMITS.agentsPerDeployment} agents carry the tags ${tags.join(", ")}: a deployment reaches at most ${LIMITS.agentsPerDeployment} agents (narrow the tags, or split it)`);
  }
  return found;
}
