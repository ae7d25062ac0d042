// Step logs (docs/protocol.md §Logs): the bytes in R2 (the LOGS bucket), the index in
// D1 (step_log_chunks), deployment_steps.log_length the truth of how many bytes a step
// has. Appending a piece at offset `stored`:
//
//   1. the piece is written to R2 under a key no one else uses
//      (steps/<stepId>/<offset, 16 digits>-<random>) — a large chunk whose bytes are all
//      new streams from the request body into R2 (appendLogStream), never held whole
//      by the Worker;
//   2. one D1 batch inserts its index row and advances log_length to stored + length,
//      each statement guarded by log_length still being `stored`, the step still open
//      and its agent not revoked — so a retried or overlapping chunk never duplicates
//      bytes, concurrent writers never leave a gap, and neither a revoke nor a result
//      landing meanwhile lets a byte in;
//   3. if the guard failed, nothing in D1 points at the object: it is deleted (best
//      effort; deleting a step's logs lists its prefix, so a leftover goes then too).
//
// Small pieces (a step printing a line at a time, uploaded every 200 ms) are merged
// into the step's last object while both are small: the new object holds the last
// one's bytes then the piece, replaces its index row in the same guarded batch, and
// the old object is deleted afterwards. So a range of 1 MiB never spans more than a
// handful of objects, whatever the step's output rhythm.
//
// Logs written before step_log_chunks existed are rows of step_logs (bytes in D1):
// still read, merged with the index rows, and deleted with the rest; never written.
import { LIMITS } from "../schema/limits.ts";
import { planLogAppend } from "./log-plan.ts";
import { awaitingResultSql } from "./projection.ts";

type LogEnv = { DB: D1Database; LOGS: R2Bucket };

// A step takes log bytes while its result is awaited.
const OPEN_STEP = awaitingResultSql("s.");

// The append guard (?1 step id, ?2 the length the writer planned against).
const GUARD = `EXISTS (SELECT 1 FROM deployment_steps s JOIN agents a ON a.id = s.agent_id
                        WHERE s.id = ?1 AND s.log_length = ?2 AND a.revoked_at IS NULL AND ${OPEN_STEP})`;

// Pieces and last objects below this size are merged (the merged object is < 2× it).
export const MERGE_BELOW_BYTES = 256 * 1024;
// A read touches at most this many R2 objects; a range needing more is answered short
// (readers go on from offset + bytes received until X-Log-Size, docs/api.md). With the
// merging above it is not reached by ranges of the API's size.
export const MAX_OBJECTS_PER_READ = 32;
const READ_ATTEMPTS = 3;
const APPEND_ATTEMPTS = 5;

export const logKeyPrefix = (stepId: string) => `steps/${stepId}/`;

export function logObjectKey(stepId: string, offset: number): string {
  const random = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");
  return `${logKeyPrefix(stepId)}${String(offset).padStart(16, "0")}-${random}`;
}

type Tail = { offset: number; length: number; r2Key: string };
type StepLogState = { agentId: string; logLength: number; open: boolean; revoked: boolean; tail: Tail | null };

// The step's log state and its last index row when that row ends the log (a merge candidate).
async function stepLogState(env: LogEnv, stepId: string): Promise<StepLogState | null> {
  const [steps, tails] = await env.DB.batch<Record<string, unknown>>([
    env.DB.prepare(
      `SELECT s.agent_id AS agentId, s.log_length AS logLength, ${OPEN_STEP} AS open, a.revoked_at IS NOT NULL AS revoked
         FROM deployment_steps s JOIN agents a ON a.id = s.agent_id WHERE s.id = ?1`,
    ).bind(stepId),
    env.DB.prepare(
      `SELECT c.offset, c.length, c.r2_key AS r2Key FROM step_log_chunks c JOIN deployment_steps s ON s.id = c.step_id
        WHERE c.step_id = ?1 AND c.offset + c.length = s.log_length ORDER BY c.offset DESC LIMIT 1`,
    ).bind(stepId),
  ]);
  const row = steps.results[0] as { agentId: string; logLength: number; open: number; revoked: number } | undefined;
  if (!row) return null;
  return { agentId: row.agentId, logLength: row.logLength, open: row.open === 1, revoked: row.revoked === 1, tail: (tails.results[0] as Tail | undefined) ?? null };
}

export type AppendOutcome =
  | { kind: "stored"; length: number } // the server now holds `length` bytes (the chunk's end, or more)
  | { kind: "not-found" } // no such step, or not this agent's
  | { kind: "revoked" }
  | { kind: "closed"; length: number } // the step's result is in: no more bytes (410)
  | { kind: "gap"; length: number } // offset beyond the stored length (409)
  | { kind: "too-large"; length: number } // past LIMITS.logBytesPerStep (413)
  | { kind: "contended"; length: number } // changed under us (409: go on from `length`)
  | { kind: "not-stored" } // a streamed body could not be stored (it broke off, or R2 failed): retry (503)
  | { kind: "length-mismatch"; read: number }; // a streamed body of another length than announced (400)

// Appends the bytes of `chunk` (said to start at `offset`) that the server does not hold yet.
export async function appendLogChunk(env: LogEnv, agentId: string, stepId: string, offset: number, chunk: Uint8Array): Promise<AppendOutcome> {
  for (let attempt = 0; attempt < APPEND_ATTEMPTS; attempt++) {
    const step = await stepLogState(env, stepId);
    if (!step || step.agentId !== agentId) return { kind: "not-found" };
    if (step.revoked) return { kind: "revoked" };
    const plan = planLogAppend(step.logLength, offset, chunk.byteLength, LIMITS.logBytesPerStep);
    // A retry of bytes already held is answered as before, even once the step ended.
    if (plan.kind === "have-all") return { kind: "stored", length: plan.length };
    if (!step.open) return { kind: "closed", length: step.logLength };
    if (plan.kind === "gap") return { kind: "gap", length: step.logLength };
    if (plan.kind === "too-large") return { kind: "too-large", length: plan.length };
    if (await appendAt(env, stepId, step.logLength, chunk.subarray(plan.skip), step.tail)) return { kind: "stored", length: plan.newLength };
    // Someone else appended in between, or the step ended or its agent was revoked
    // meanwhile: look again.
  }
  return { kind: "contended", length: (await stepLogState(env, stepId))?.logLength ?? 0 };
}

// Stores `data` at offset `stored` only if the step still holds exactly `stored` bytes,
// is still open and its agent not revoked; false means nothing was stored (and the
// object written for it deleted). `tail`: the index row ending at `stored`, merged with
// `data` when both are small (left out: no merge).
export async function tryAppendAt(env: LogEnv, stepId: string, stored: number, data: Uint8Array, tail: Tail | null = null): Promise<boolean> {
  return appendAt(env, stepId, stored, data, tail);
}

async function appendAt(env: LogEnv, stepId: string, stored: number, data: Uint8Array, tail: Tail | null): Promise<boolean> {
  if (data.byteLength === 0) return false; // nothing to add: planLogAppend answers have-all first
  const merge = tail !== null && tail.offset + tail.length === stored && tail.length < MERGE_BELOW_BYTES && data.byteLength < MERGE_BELOW_BYTES;
  if (!merge) {
    const key = logObjectKey(stepId, stored);
    await env.LOGS.put(key, data);
    return indexObject(env, stepId, stored, data.byteLength, { key, offset: stored, length: data.byteLength }, null);
  }
  const prev = await env.LOGS.get(tail.r2Key);
  if (prev === null) return false; // replaced meanwhile by a concurrent merge: the guard would fail
  const prevBytes = new Uint8Array(await prev.arrayBuffer());
  if (prevBytes.byteLength !== tail.length) throw new Error(`log object ${tail.r2Key} holds ${prevBytes.byteLength} bytes, its index row says ${tail.length}`);
  const object = new Uint8Array(tail.length + data.byteLength);
  object.set(prevBytes, 0);
  object.set(data, tail.length);
  const key = logObjectKey(stepId, tail.offset);
  await env.LOGS.put(key, object);
  return indexObject(env, stepId, stored, data.byteLength, { key, offset: tail.offset, length: object.byteLength }, tail);
}

// The guarded D1 batch for an object already in R2: its index row (replacing `replaces`,
// the row it merged), log_length from `stored` to `stored + added`. False: the guard
// failed, nothing changed in D1, and the object is deleted.
async function indexObject(env: LogEnv, stepId: string, stored: number, added: number, object: { key: string; offset: number; length: number }, replaces: Tail | null): Promise<boolean> {
  const statements = [
    ...(replaces ? [env.DB.prepare(`DELETE FROM step_log_chunks WHERE step_id = ?1 AND offset = ?3 AND r2_key = ?4 AND ${GUARD}`).bind(stepId, stored, replaces.offset, replaces.r2Key)] : []),
    env.DB.prepare(`INSERT INTO step_log_chunks (step_id, offset, length, r2_key) SELECT ?1, ?3, ?4, ?5 WHERE ${GUARD}`).bind(stepId, stored, object.offset, object.length, object.key),
    env.DB.prepare(`UPDATE deployment_steps SET log_length = ?2 + ?3 WHERE id = ?1 AND ${GUARD}`).bind(stepId, stored, added),
  ];
  let updated: D1Result;
  try {
    updated = (await env.DB.batch(statements)).at(-1)!;
  } catch (e) {
    await deleteObject(env, object.key, "its index batch failed");
    throw e;
  }
  if (updated.meta.changes !== 1) {
    await deleteObject(env, object.key, "another upload got there first, or the step ended or its agent was revoked");
    return false;
  }
  if (replaces) await deleteObject(env, replaces.r2Key, "merged into a newer object");
  return true;
}

// A chunk whose body is streamed rather than held: `length` bytes (the request's
// Content-Length) at `offset`, at least MERGE_BELOW_BYTES (never merged). When the
// whole chunk is new — the usual case — the body goes straight into its R2 object and
// the Worker never holds it. Otherwise (a retry overlapping stored bytes, or a refusal)
// the body is read first, as appendLogChunk does. A guard that fails after streaming
// cannot try again (the bytes are gone): the answer then says where the log is.
export async function appendLogStream(
  env: LogEnv,
  agentId: string,
  stepId: string,
  offset: number,
  body: ReadableStream<Uint8Array>,
  length: number,
  readBody: () => Promise<Uint8Array>,
): Promise<AppendOutcome> {
  const step = await stepLogState(env, stepId);
  const plan = step ? planLogAppend(step.logLength, offset, length, LIMITS.logBytesPerStep) : null;
  if (!step || step.agentId !== agentId || step.revoked || !step.open || plan?.kind !== "append" || plan.skip !== 0 || length < MERGE_BELOW_BYTES) {
    return appendLogChunk(env, agentId, stepId, offset, await readBody());
  }
  const key = logObjectKey(stepId, offset);
  let size: number;
  try {
    size = (await env.LOGS.put(key, body))?.size ?? -1;
  } catch (e) {
    // The body broke off (the agent went away) or R2 failed: either way worth a retry.
    console.warn(`log chunk of step ${stepId} at offset ${offset} (${length} bytes) could not be stored in R2`, e);
    await deleteObject(env, key, "its body could not be stored whole");
    return { kind: "not-stored" };
  }
  if (size !== length) {
    await deleteObject(env, key, `${size} bytes stored, ${length} announced`);
    return { kind: "length-mismatch", read: size };
  }
  if (await indexObject(env, stepId, offset, length, { key, offset, length }, null)) return { kind: "stored", length: offset + length };
  const now = await stepLogState(env, stepId);
  if (!now || now.agentId !== agentId) return { kind: "not-found" };
  if (now.revoked) return { kind: "revoked" };
  const again = planLogAppend(now.logLength, offset, length, LIMITS.logBytesPerStep);
  if (again.kind === "have-all") return { kind: "stored", length: again.length };
  if (!now.open) return { kind: "closed", length: now.logLength };
  return { kind: "contended", length: now.logLength };
}

async function deleteObject(env: LogEnv, key: string, why: string): Promise<void> {
  try {
    await env.LOGS.delete(key);
  } catch (e) {
    // Harmless: no index row points at it; deleting the step's logs lists its prefix.
    console.warn(`log object ${key} (${why}) could not be deleted; it stays until the step's logs are deleted`, e);
  }
}

export type LogRange = { bytes: Uint8Array; size: number; complete: boolean };

type Piece = { offset: number; length: number } & ({ r2Key: string } | { data: Uint8Array });

// At most `limit` bytes of a step's output from byte `offset`, with the size stored so
// far and whether it is final (the step's result is in: its agent uploads the whole
// output before reporting it). Reads only the objects (and legacy rows) overlapping the
// range, and only the range's part of each. Null: no such step in that deployment.
// `{beyond}`: the offset is past the size stored so far (given).
export async function readLogRange(env: LogEnv, deploymentId: string, stepId: string, offset: number, limit: number): Promise<LogRange | null | { beyond: number }> {
  for (let attempt = 1; ; attempt++) {
    const read = await tryReadLogRange(env, deploymentId, stepId, offset, limit);
    if (read !== "moved") return read;
    // An object was replaced by a merge between the index read and its fetch: read the index again.
    if (attempt >= READ_ATTEMPTS) throw new Error(`log of step ${stepId}: objects kept moving under ${READ_ATTEMPTS} reads at offset ${offset}`);
  }
}

async function tryReadLogRange(env: LogEnv, deploymentId: string, stepId: string, offset: number, limit: number): Promise<LogRange | null | { beyond: number } | "moved"> {
  const end0 = offset + limit;
  // One batch: one snapshot of the size and the rows. For each store, the row holding
  // `offset` (the last one starting at or before it) and the rows starting inside the range.
  const [steps, chunkAt, chunksIn, legacyAt, legacyIn] = await env.DB.batch<Record<string, unknown>>([
    env.DB.prepare(`SELECT s.log_length AS size, NOT ${OPEN_STEP} AS complete FROM deployment_steps s WHERE s.id = ?1 AND s.deployment_id = ?2`).bind(stepId, deploymentId),
    env.DB.prepare(`SELECT offset, length, r2_key AS r2Key FROM step_log_chunks WHERE step_id = ?1 AND offset <= ?2 ORDER BY offset DESC LIMIT 1`).bind(stepId, offset),
    env.DB.prepare(`SELECT offset, length, r2_key AS r2Key FROM step_log_chunks WHERE step_id = ?1 AND offset > ?2 AND offset < ?3 ORDER BY offset LIMIT ?4`).bind(
      stepId, offset, end0, MAX_OBJECTS_PER_READ,
    ),
    env.DB.prepare(`SELECT offset, data FROM step_logs WHERE step_id = ?1 AND offset <= ?2 ORDER BY offset DESC LIMIT 1`).bind(stepId, offset),
    env.DB.prepare(`SELECT offset, data FROM step_logs WHERE step_id = ?1 AND offset > ?2 AND offset < ?3 ORDER BY offset`).bind(stepId, offset, end0),
  ]);
  const step = steps.results[0] as { size: number; complete: number } | undefined;
  if (!step) return null;
  if (offset > step.size) return { beyond: step.size };
  let end = Math.min(step.size, end0);
  const legacy = (rows: Record<string, unknown>[]): Piece[] =>
    rows.map((r) => {
      const raw = r.data as ArrayBuffer | number[];
      const data = raw instanceof ArrayBuffer ? new Uint8Array(raw) : Uint8Array.from(raw);
      return { offset: r.offset as number, length: data.byteLength, data };
    });
  const indexed = chunksIn.results as Tail[];
  // Too many objects for one read: answer up to where the last one we take ends.
  if (indexed.length >= MAX_OBJECTS_PER_READ) end = Math.min(end, indexed[MAX_OBJECTS_PER_READ - 1].offset);
  const pieces = [...(chunkAt.results as Tail[]), ...indexed, ...legacy(legacyAt.results), ...legacy(legacyIn.results)]
    .filter((p) => p.offset < end && p.offset + p.length > offset)
    .sort((a, b) => a.offset - b.offset);
  const out = new Uint8Array(Math.max(0, end - offset));
  // The rows tile [0, size): check that they cover the range before reading any byte.
  let covered = offset;
  for (const p of pieces) {
    if (p.offset > covered) break;
    covered = Math.max(covered, p.offset + p.length);
  }
  if (covered < end) throw new Error(`log of step ${stepId}: no stored bytes at offset ${covered} (size ${step.size})`);
  const fetched = await Promise.all(
    pieces.map(async (p): Promise<boolean> => {
      const from = Math.max(offset, p.offset);
      const to = Math.min(end, p.offset + p.length);
      if ("data" in p) {
        out.set(p.data.subarray(from - p.offset, to - p.offset), from - offset);
        return true;
      }
      const obj = await env.LOGS.get(p.r2Key, { range: { offset: from - p.offset, length: to - from } });
      if (obj === null) return false;
      const bytes = new Uint8Array(await obj.arrayBuffer());
      if (bytes.byteLength !== to - from) throw new Error(`log object ${p.r2Key}: ${bytes.byteLength} bytes read, ${to - from} asked`);
      out.set(bytes, from - offset);
      return true;
    }),
  );
  if (fetched.includes(false)) return "moved";
  return { bytes: out, size: step.size, complete: step.complete === 1 };
}

// Deletes the logs of these steps: their index rows and legacy rows, their log_length
// back to 0 (for a step row that stays), then every R2 object under their prefixes —
// listed, so objects of appends that failed half-way go too. For deployments or steps
// being deleted (retention) and logs being discarded; the caller deletes step rows
// after (or keeps them: they then read as empty). Safe to repeat.
export async function deleteStepLogs(env: LogEnv, stepIds: readonly string[]): Promise<{ objects: number }> {
  const D1_IDS = 50; // bound parameters per statement stay far below D1's limit
  for (let i = 0; i < stepIds.length; i += D1_IDS) {
    const ids = stepIds.slice(i, i + D1_IDS);
    const marks = ids.map((_, k) => `?${k + 1}`).join(", ");
    await env.DB.batch([
      env.DB.prepare(`DELETE FROM step_log_chunks WHERE step_id IN (${marks})`).bind(...ids),
      env.DB.prepare(`DELETE FROM step_logs WHERE step_id IN (${marks})`).bind(...ids),
      env.DB.prepare(`UPDATE deployment_steps SET log_length = 0 WHERE id IN (${marks}) AND log_length <> 0`).bind(...ids),
    ]);
  }
  let objects = 0;
  for (const stepId of stepIds) {
    let cursor: string | undefined;
    do {
      const page = await env.LOGS.list({ prefix: logKeyPrefix(stepId), cursor, limit: 1000 });
      if (page.objects.length > 0) await env.LOGS.delete(page.objects.map((o) => o.key));
      objects += page.objects.length;
      cursor = page.truncated ? page.cursor : undefined;
    } while (cursor !== undefined);
  }
  return { objects };
}

// deleteStepLogs for every step of these deployments.
export async function deleteDeploymentLogs(env: LogEnv, deploymentIds: readonly string[]): Promise<{ objects: number }> {
  const stepIds: string[] = [];
  for (const id of deploymentIds) {
    const rows = await env.DB.prepare("SELECT id FROM deployment_steps WHERE deployment_id = ?1").bind(id).all<{ id: string }>();
    stepIds.push(...rows.results.map((r) => r.id));
  }
  return deleteStepLogs(env, stepIds);
}
