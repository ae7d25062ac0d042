// Step logs in D1: byte chunks keyed by their offset. Appends are guarded by the
// step's stored length, so concurrent or retried uploads can neither duplicate
// bytes nor leave a gap.
import { LIMITS } from "../schema/limits.ts";
import type { Env } from "./env.ts";
import { HttpError } from "./http-errors.ts";
import { planLogAppend } from "./log-plan.ts";

const MAX_ATTEMPTS = 5;

async function stepLogState(env: Env, stepId: string): Promise<{ agentId: string; logLength: number } | null> {
  return env.DB.prepare("SELECT agent_id AS agentId, log_length AS logLength FROM deployment_steps WHERE id = ?")
    .bind(stepId)
    .first<{ agentId: string; logLength: number }>();
}

export async function appendLog(env: Env, agentId: string, stepId: string, offset: number, chunk: Uint8Array): Promise<number> {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const step = await stepLogState(env, stepId);
    if (!step || step.agentId !== agentId) throw new HttpError(404, `step ${stepId} is not one of this agent's steps`);
    const plan = planLogAppend(step.logLength, offset, chunk.byteLength, LIMITS.logBytesPerStep);
    switch (plan.kind) {
      case "gap":
        throw new HttpError(409, `offset ${offset} is beyond the ${step.logLength} bytes the server holds`, { length: step.logLength });
      case "too-large":
        throw new HttpError(413, `a step's log is limited to ${LIMITS.logBytesPerStep} bytes`, { length: plan.length });
      case "have-all":
        return plan.length;
      case "append": {
        if (await tryAppendAt(env, stepId, step.logLength, chunk.slice(plan.skip))) return plan.newLength;
        // Someone else appended in between: plan again against the new length.
      }
    }
  }
  throw new HttpError(409, "the log changed concurrently too many times; retry", { length: (await stepLogState(env, stepId))?.logLength ?? 0 });
}

// Stores `data` at offset `stored` only if the step still holds exactly `stored`
// bytes; false means another upload got there first (nothing was written).
export async function tryAppendAt(env: Env, stepId: string, stored: number, data: Uint8Array): Promise<boolean> {
  const copy = data.slice();
  const [, updated] = await env.DB.batch([
    env.DB.prepare(
      `INSERT INTO step_logs (step_id, offset, data)
       SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM deployment_steps WHERE id = ?1 AND log_length = ?2)`,
    ).bind(stepId, stored, copy.buffer),
    env.DB.prepare("UPDATE deployment_steps SET log_length = ?2 + ?3 WHERE id = ?1 AND log_length = ?2").bind(stepId, stored, copy.byteLength),
  ]);
  return updated.meta.changes === 1;
}

export async function readLog(env: Env, stepId: string): Promise<Uint8Array> {
  const { results } = await env.DB.prepare("SELECT offset, data FROM step_logs WHERE step_id = ? ORDER BY offset").bind(stepId).all<{ offset: number; data: ArrayBuffer | number[] }>();
  const parts = results.map((r) => (r.data instanceof ArrayBuffer ? new Uint8Array(r.data) : Uint8Array.from(r.data)));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
