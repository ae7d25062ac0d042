// PUT /agent/v1/steps/:stepId/log?offset=N (docs/protocol.md §Logs): a chunk of a
// step's output, at most LIMITS.logChunkBytes, of which the bytes the server does not
// hold yet are appended (d1/logs.ts: bytes to R2, then a guarded D1 index batch).
// Answers 200 {length}, or 409 {length} (a gap, or a concurrent upload: go on from
// `length`), 410 {length} (the step has ended), 413 (past the per-step cap, or a chunk
// too large), 503 (a streamed chunk could not be stored: send it again).
import { AGENT_REVOKED, logUploadQuery, REVOKED_ERROR } from "../../schema/agent-api.ts";
import { LIMITS } from "../../schema/limits.ts";
import { json } from "../../schema/http.ts";
import { appendLogChunk, appendLogStream, MERGE_BELOW_BYTES, type AppendOutcome } from "../../d1/logs.ts";
import { requireAgent } from "../auth.ts";
import { parseWith, readBytes, singleQuery } from "../body.ts";
import type { Env } from "../env.ts";
import { HttpError } from "../http-errors.ts";
import type { ApiRequest } from "../api-request.ts";

export async function putStepLog(request: ApiRequest, env: Env): Promise<Response> {
  const agent = await requireAgent(request, env);
  const { offset } = parseWith(logUploadQuery, singleQuery(request.query), "query");
  const stepId = request.params.stepId;
  if (!stepId || stepId.length > 200) throw new HttpError(400, "invalid step id");
  const cap = LIMITS.logChunkBytes;
  const declared = contentLength(request);
  // A large chunk of announced size (what the agent sends) streams into R2: the Worker
  // (128 MB of memory) never holds it. Any other is read first, at most `cap` bytes.
  const outcome =
    declared !== null && declared >= MERGE_BELOW_BYTES && declared <= cap && request.body !== null
      ? await appendLogStream(env, agent.id, stepId, offset, request.body, declared, () => readChunk(request, cap))
      : await appendLogChunk(env, agent.id, stepId, offset, await readChunk(request, cap));
  return json({ length: answer(outcome, stepId, offset) });
}

function contentLength(request: Request): number | null {
  const declared = request.headers.get("content-length");
  const n = declared === null ? NaN : Number(declared);
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}

// The chunk, held once: with a Content-Length (what the agent sends) the runtime reads
// the body into one buffer; without, the capped reader gathers it.
async function readChunk(request: Request, cap: number): Promise<Uint8Array> {
  const n = contentLength(request);
  if (n === null || n > cap) return readBytes(request, cap, "log chunk");
  const bytes = new Uint8Array(await request.arrayBuffer());
  if (bytes.byteLength > cap) throw new HttpError(413, `log chunk is larger than ${cap} bytes`);
  return bytes;
}

// The append's outcome as the protocol's answer: the server's length, or its refusal.
export async function appendLog(env: Env, agentId: string, stepId: string, offset: number, chunk: Uint8Array): Promise<number> {
  return answer(await appendLogChunk(env, agentId, stepId, offset, chunk), stepId, offset);
}

function answer(outcome: AppendOutcome, stepId: string, offset: number): number {
  switch (outcome.kind) {
    case "stored":
      return outcome.length;
    case "not-found":
      throw new HttpError(404, `step ${stepId} is not one of this agent's steps`);
    case "revoked":
      throw new HttpError(401, REVOKED_ERROR, { code: AGENT_REVOKED });
    case "closed":
      throw new HttpError(410, `step ${stepId} has ended; its log takes no more bytes`, { length: outcome.length });
    case "gap":
      throw new HttpError(409, `offset ${offset} is beyond the ${outcome.length} bytes the server holds`, { length: outcome.length });
    case "too-large":
      throw new HttpError(413, `a step's log is limited to ${LIMITS.logBytesPerStep} bytes`, { length: outcome.length });
    case "contended":
      throw new HttpError(409, `the log changed concurrently; the server holds ${outcome.length} bytes`, { length: outcome.length });
    case "not-stored":
      throw new HttpError(503, "the log chunk could not be stored; send it again", {}, { "retry-after": "1" });
    case "length-mismatch":
      throw new HttpError(400, `the log chunk's body has ${outcome.read} bytes, not the Content-Length announced`);
  }
}
