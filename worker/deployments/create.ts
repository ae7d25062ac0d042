// Creating a deployment: every listed agent runs every step. All rows (and the
// Idempotency-Key row, when given) are written in one atomic D1 batch; dispatch to
// the agents happens afterwards.
import { sql } from "drizzle-orm";
import { commandIdFor } from "../../schema/agent-api.ts";
import { IDEMPOTENCY_KEY_TTL_MS, type CreateDeploymentBody } from "../../schema/api.ts";
import { DEFAULT_AGENT_LOST_AFTER_SECONDS } from "../../schema/steps.ts";
import { prepared, type Db } from "../../d1/db.ts";
import { HttpError } from "../http-errors.ts";
import type { DispatchTarget, StepToDispatch } from "../../d1/dispatch-targets.ts";

export type IdempotencyClaim = { key: string; requestHash: string };

export async function createDeployment(
  db: Db,
  raw: D1Database,
  body: CreateDeploymentBody,
  now: number,
  claim: IdempotencyClaim | null = null,
): Promise<{ id: string; targets: DispatchTarget[] }> {
  const found = await db.all<{ id: string; name: string }>(
    sql`SELECT id, name FROM agents
         WHERE revoked_at IS NULL AND name IN (SELECT value FROM json_each(${JSON.stringify(body.agents)}))`,
  );
  const idByName = new Map(found.map((a) => [a.name, a.id]));
  const unknown = body.agents.filter((n) => !idByName.has(n));
  if (unknown.length > 0) {
    throw new HttpError(422, `unknown agent${unknown.length > 1 ? "s" : ""}: ${unknown.join(", ")}`, { unknownAgents: unknown });
  }

  const id = crypto.randomUUID();
  const name = body.name ?? `deploy to ${body.agents.join(", ")}`.slice(0, 200);
  const agentLostAfterSeconds = body.agentLostAfterSeconds ?? DEFAULT_AGENT_LOST_AFTER_SECONDS;
  const targets: DispatchTarget[] = body.agents.map((agentName) => {
    const agentId = idByName.get(agentName)!;
    const steps: StepToDispatch[] = body.steps.map((s, position) => ({
      id: crypto.randomUUID(),
      position,
      name: s.name,
      command: s.command,
      timeoutSeconds: s.timeoutSeconds ?? null,
      retry: s.retry ?? "never",
    }));
    return { deploymentId: id, agentId, commandId: commandIdFor(id, agentId), agentLostAfterSeconds, steps };
  });

  // Rows travel as one JSON parameter per statement (json_each) to stay within
  // D1's 100-bound-parameters limit whatever the number of steps.
  // The key row goes first: when another request already holds the key, its UNIQUE
  // violation rolls the whole batch back and the caller looks up the winner. An expired
  // row of the same key is removed in the same batch.
  await raw.batch([
    ...(claim
      ? [
          prepared(raw, sql`DELETE FROM idempotency_keys WHERE key = ${claim.key} AND created_at <= ${now - IDEMPOTENCY_KEY_TTL_MS}`),
          prepared(raw, sql`INSERT INTO idempotency_keys (key, request_hash, deployment_id, created_at) VALUES (${claim.key}, ${claim.requestHash}, ${id}, ${now})`),
        ]
      : []),
    prepared(raw, sql`INSERT INTO deployments (id, name, status, created_at, updated_at, agent_lost_after_seconds)
                      VALUES (${id}, ${name}, 'queued', ${now}, ${now}, ${agentLostAfterSeconds})`),
    prepared(raw, sql`INSERT INTO deployment_targets (deployment_id, agent_id, command_id, dispatched_at)
               SELECT ${id}, json_extract(value, '$.agentId'), json_extract(value, '$.commandId'), NULL
                 FROM json_each(${JSON.stringify(targets.map((t) => ({ agentId: t.agentId, commandId: t.commandId })))})`),
    ...targets.map((t) =>
      prepared(raw, sql`INSERT INTO deployment_steps (id, deployment_id, agent_id, position, name, type, command, timeout_seconds, retry, status)
                 SELECT json_extract(value, '$.id'), ${id}, ${t.agentId}, json_extract(value, '$.position'), json_extract(value, '$.name'),
                        'shell', json_extract(value, '$.command'), json_extract(value, '$.timeoutSeconds'), json_extract(value, '$.retry'), 'pending'
                   FROM json_each(${JSON.stringify(t.steps)})`),
    ),
  ]);
  return { id, targets };
}
