// GET /api/v1/deployments/:id/steps/:stepId/log?offset&limit (docs/api.md "Step logs"):
// at most `limit` bytes of the output from byte `offset` — raw bytes (a range may cut a
// UTF-8 character: readers decode across ranges), with the size so far and whether it
// is final, so a page can fetch only what is new. The bytes come from R2 through the
// D1 index (d1/logs.ts).
import { logRangeQuery, pathId } from "../../schema/api.ts";
import { readLogRange } from "../../d1/logs.ts";
import { requireApiRole } from "../auth.ts";
import { parseWith, singleQuery } from "../body.ts";
import type { Env } from "../env.ts";
import { HttpError } from "../http-errors.ts";
import type { ApiRequest } from "../api-request.ts";

export async function getStepLog(request: ApiRequest, env: Env): Promise<Response> {
  await requireApiRole(request, env, "viewer");
  const id = parseWith(pathId, request.params.id, "deployment id");
  const stepId = parseWith(pathId, request.params.stepId, "step id");
  const { offset, limit } = parseWith(logRangeQuery, singleQuery(request.query), "query");
  const range = await readLogRange(env, id, stepId, offset, limit);
  if (!range) throw new HttpError(404, `step ${stepId} of deployment ${id} not found`);
  if ("beyond" in range) throw new HttpError(416, `offset ${offset} is beyond the ${range.beyond} bytes of this log`, { size: range.beyond });
  return new Response(range.bytes, {
    status: 200,
    headers: {
      "content-type": "text/plain; charset=utf-8",
      "x-log-size": String(range.size),
      "x-log-complete": String(range.complete),
      "cache-control": "no-store",
    },
  });
}
