// Step logs in D1: byte chunks keyed by their offset. Appends are guarded by the
// step's stored length, so concurrent or retried uploads can neither duplicate
// bytes nor leave a gap; and by the step being open and its agent not revoked, so a
// revoked agent or a step that has ended takes no more bytes (docs/protocol.md §Logs).
import { AGENT_REVOKED, REVOKED_ERROR } from "../schema/agent-api.ts";
import { LIMITS } from "../schema/limits.ts";
import { awaitingResultSql } from "../d1/projection.ts";
import type { Env } from "./env.ts";
import { HttpError } from "./http-errors.ts";
import { planLogAppend } from "./log-plan.ts";

const MAX_ATTEMPTS = 5;

// A step takes log bytes while its result is awaited.
const OPEN_STEP = awaitingResultSql("s.");

type StepLogState = { agentId: string; logLength: number; open: boolean; revoked: boolean };

async function stepLogState(env: Env, stepId: string): Promise<StepLogState | null> {
  const row = await env.DB.prepare(
    `SELECT s.agent_id AS agentId, s.log_length AS logLength, ${OPEN_STEP} AS open, a.revoked_at IS NOT NULL AS revoked
       FROM deployment_steps s JOIN agents a ON a.id = s.agent_id WHERE s.id = ?`,
  )
    .bind(stepId)
    .first<{ agentId: string; logLength: number; open: number; revoked: number }>();
  return row && { agentId: row.agentId, logLength: row.logLength, open: row.open === 1, revoked: row.revoked === 1 };
}

export async function appendLog(env: Env, agentId: string, stepId: string, offset: number, chunk: Uint8Array): Promise<number> {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const step = await stepLogState(env, stepId);
    if (!step || step.agentId !== agentId) throw new HttpError(404, `step ${stepId} is not one of this agent's steps`);
    if (step.revoked) throw new HttpError(401, REVOKED_ERROR, { code: AGENT_REVOKED });
    const plan = planLogAppend(step.logLength, offset, chunk.byteLength, LIMITS.logBytesPerStep);
    // A retry of bytes already held is answered as before, even once the step ended.
    if (plan.kind === "have-all") return plan.length;
    if (!step.open) throw new HttpError(410, `step ${stepId} has ended; its log takes no more bytes`, { length: step.logLength });
    switch (plan.kind) {
      case "gap":
        throw new HttpError(409, `offset ${offset} is beyond the ${step.logLength} bytes the server holds`, { length: step.logLength });
      case "too-large":
        throw new HttpError(413, `a step's log is limited to ${LIMITS.logBytesPerStep} bytes`, { length: plan.length });
      case "append": {
        if (await tryAppendAt(env, stepId, step.logLength, chunk.slice(plan.skip))) return plan.newLength;
        // Someone else appended in between, or the step ended or its agent was revoked
        // meanwhile: look again.
      }
    }
  }
  throw new HttpError(409, "the log changed concurrently too many times; retry", { length: (await stepLogState(env, stepId))?.logLength ?? 0 });
}

// Stores `data` at offset `stored` only if the step still holds exactly `stored` bytes,
// is still open and its agent not revoked; false means nothing was written.
export async function tryAppendAt(env: Env, stepId: string, stored: number, data: Uint8Array): Promise<boolean> {
  const copy = data.slice();
  const guard = `EXISTS (SELECT 1 FROM deployment_steps s JOIN agents a ON a.id = s.agent_id
                          WHERE s.id = ?1 AND s.log_length = ?2 AND a.revoked_at IS NULL AND ${OPEN_STEP})`;
  const [, updated] = await env.DB.batch([
    env.DB.prepare(`INSERT INTO step_logs (step_id, offset, data) SELECT ?1, ?2, ?3 WHERE ${guard}`).bind(stepId, stored, copy.buffer),
    env.DB.prepare(`UPDATE deployment_steps SET log_length = ?2 + ?3 WHERE id = ?1 AND ${guard}`).bind(stepId, stored, copy.byteLength),
  ]);
  return updated.meta.changes === 1;
}

export type LogRange = { bytes: Uint8Array; size: number; complete: boolean };

// At most `limit` bytes of a step's output from byte `offset`, with the size stored so
// far and whether it is final (the step's result is in: its agent uploads the whole
// output before reporting it). Reads only the chunks overlapping the range.
export async function readLogRange(env: Env, deploymentId: string, stepId: string, offset: number, limit: number): Promise<LogRange | null> {
  const [steps, chunks] = await env.DB.batch<Record<string, unknown>>([
    env.DB.prepare(`SELECT s.log_length AS size, NOT ${OPEN_STEP} AS complete FROM deployment_steps s WHERE s.id = ?1 AND s.deployment_id = ?2`).bind(stepId, deploymentId),
    env.DB.prepare(
      `SELECT offset, data FROM step_logs
        WHERE step_id = ?1 AND offset >= ?2 - ${LIMITS.logChunkBytes} AND offset < ?2 + ?3 AND offset + length(data) > ?2
        ORDER BY offset`,
    ).bind(stepId, offset, limit),
  ]);
  const step = steps.results[0] as { size: number; complete: number } | undefined;
  if (!step) return null;
  if (offset > step.size) throw new HttpError(416, `offset ${offset} is beyond the ${step.size} bytes of this log`, { size: step.size });
  const end = Math.min(step.size, offset + limit);
  const out = new Uint8Array(Math.max(0, end - offset));
  for (const c of chunks.results as { offset: number; data: ArrayBuffer | number[] }[]) {
    const data = c.data instanceof ArrayBuffer ? new Uint8Array(c.data) : Uint8Array.from(c.data);
    const from = Math.max(offset, c.offset);
    const to = Math.min(end, c.offset + data.byteLength);
    if (to > from) out.set(data.subarray(from - c.offset, to - c.offset), from - offset);
  }
  return { bytes: out, size: step.size, complete: step.complete === 1 };
}
