// Creating a deployment: every target agent runs every step. The targets (named, or
// by tags) and plug-in versions are resolved now and kept; each target gets its
// rollout wave. All rows (and the Idempotency-Key row, when given) are written in one
// atomic D1 batch; dispatch to the agents happens afterwards (wave 1 at once, later
// waves by the deployment's coordinator).
import { sql } from "drizzle-orm";
import { commandIdFor } from "../../schema/agent-api.ts";
import { IDEMPOTENCY_KEY_TTL_MS, type CreateDeploymentBody, type Properties } from "../../schema/api.ts";
import { DEFAULT_AGENT_LOST_AFTER_SECONDS } from "../../schema/steps.ts";
import { prepared, type Db } from "../../d1/db.ts";
import type { DispatchTarget, StepToDispatch } from "../../d1/dispatch-targets.ts";
import { assignWaves } from "../../durable-objects/rollout-rules.ts";
import { defineSteps } from "./step-definitions.ts";
import { resolveTargets } from "./targets.ts";
import { LIMITS } from "../../schema/limits.ts";
import { HttpError } from "../http-errors.ts";

// One statement's JSON parameter stays well under D1's 2 MB per value, and one INSERT
// under ROWS_PER_STATEMENT rows.
const CHUNK_BYTES = 512 * 1024;
const ROWS_PER_STATEMENT = 20_000;

// Items as JSON arrays of at most CHUNK_BYTES and ROWS_PER_STATEMENT / rowsPerItem items.
function chunks(items: unknown[], rowsPerItem = 1): string[] {
  const out: string[] = [];
  let current: string[] = [];
  let bytes = 0;
  for (const item of items) {
    const text = JSON.stringify(item);
    if (current.length > 0 && (bytes + text.length > CHUNK_BYTES || (current.length + 1) * rowsPerItem > ROWS_PER_STATEMENT)) {
      out.push(`[${current.join(",")}]`);
      current = [];
      bytes = 0;
    }
    current.push(text);
    bytes += text.length + 1;
  }
  if (current.length > 0) out.push(`[${current.join(",")}]`);
  return out;
}

export type IdempotencyClaim = { key: string; requestHash: string };
export type CreatedDeployment = { id: string; waves: number; firstWave: DispatchTarget[] };

export async function createDeployment(
  db: Db,
  raw: D1Database,
  body: CreateDeploymentBody,
  now: number,
  claim: IdempotencyClaim | null = null,
): Promise<CreatedDeployment> {
  const resolved = await resolveTargets(db, body);
  if (resolved.length * body.steps.length > LIMITS.stepRowsPerDeployment) {
    throw new HttpError(422, `${resolved.length} agents × ${body.steps.length} steps is more than the ${LIMITS.stepRowsPerDeployment} steps one deployment may hold: use fewer steps or split the deployment`);
  }
  const steps = await defineSteps(db, body.steps);
  const { waves, waveOf } = assignWaves(resolved.length, body.rollout);

  const id = crypto.randomUUID();
  const name = body.name ?? (body.agents ? `deploy to ${body.agents.join(", ")}` : `deploy to tags ${body.targets!.tags.join(", ")}`).slice(0, 200);
  const agentLostAfterSeconds = body.agentLostAfterSeconds ?? DEFAULT_AGENT_LOST_AFTER_SECONDS;
  const targets = resolved.map((agent, i) => {
    const rows: StepToDispatch[] = steps.map((s, position) => ({
      id: crypto.randomUUID(),
      position,
      name: s.spec.name,
      type: s.type,
      command: s.command,
      definition: s.definition,
      timeoutSeconds: s.spec.timeoutSeconds ?? null,
      retry: s.spec.retry ?? "never",
    }));
    const target: DispatchTarget = {
      deploymentId: id,
      agentId: agent.id,
      commandId: commandIdFor(id, agent.id),
      agentLostAfterSeconds,
      waves,
      context: { agentName: agent.name, agentProperties: JSON.parse(agent.properties) as Properties, deploymentProperties: body.properties },
      steps: rows,
    };
    return { target, wave: waveOf(i), agentProperties: agent.properties };
  });
  const pluginsUsed = [...new Map(steps.flatMap((s) => (s.plugin ? [[`${s.plugin.id}@${s.plugin.version}`, s.plugin] as const] : []))).values()];
  const pluginOf = (position: number) => steps[position].plugin;
  const stepDefinitions = JSON.stringify(targets[0].target.steps.map(({ id: _id, ...s }) => ({ ...s, pluginId: pluginOf(s.position)?.id ?? null, pluginVersion: pluginOf(s.position)?.version ?? null })));

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
    prepared(raw, sql`INSERT INTO deployments (id, name, status, created_at, updated_at, agent_lost_after_seconds, properties, target_tags, rollout, waves, current_wave)
                      VALUES (${id}, ${name}, 'queued', ${now}, ${now}, ${agentLostAfterSeconds}, ${JSON.stringify(body.properties)},
                              ${body.targets ? JSON.stringify(body.targets.tags) : null}, ${body.rollout ? JSON.stringify(body.rollout) : null}, ${waves}, 1)`),
    ...chunks(targets.map((t) => ({ agentId: t.target.agentId, commandId: t.target.commandId, wave: t.wave, agentProperties: t.agentProperties }))).map((chunk) =>
      prepared(raw, sql`INSERT INTO deployment_targets (deployment_id, agent_id, command_id, dispatched_at, wave, agent_properties)
               SELECT ${id}, json_extract(value, '$.agentId'), json_extract(value, '$.commandId'), NULL, json_extract(value, '$.wave'), json_extract(value, '$.agentProperties')
                 FROM json_each(${chunk})`),
    ),
    // Every target runs the same steps: the definitions travel once, each target with
    // its own step ids (by position), and SQL pairs them.
    ...chunks(targets.map(({ target }) => ({ agentId: target.agentId, stepIds: target.steps.map((x) => x.id) })), steps.length).map((chunk) =>
      prepared(raw, sql`INSERT INTO deployment_steps (id, deployment_id, agent_id, position, name, type, command, definition, plugin_id, plugin_version, timeout_seconds, retry, status)
                 SELECT json_extract(t.value, '$.stepIds[' || s.key || ']'), ${id}, json_extract(t.value, '$.agentId'), json_extract(s.value, '$.position'), json_extract(s.value, '$.name'),
                        json_extract(s.value, '$.type'), json_extract(s.value, '$.command'), json_extract(s.value, '$.definition'),
                        json_extract(s.value, '$.pluginId'), json_extract(s.value, '$.pluginVersion'),
                        json_extract(s.value, '$.timeoutSeconds'), json_extract(s.value, '$.retry'), 'pending'
                   FROM json_each(${chunk}) t CROSS JOIN json_each(${stepDefinitions}) s`),
    ),
    ...(pluginsUsed.length
      ? [
          prepared(raw, sql`INSERT INTO deployment_plugins (deployment_id, plugin_id, version)
                     SELECT ${id}, json_extract(value, '$.id'), json_extract(value, '$.version') FROM json_each(${JSON.stringify(pluginsUsed)})`),
        ]
      : []),
  ]);
  return { id, waves, firstWave: targets.filter((t) => t.wave === 1).map((t) => t.target) };
}
