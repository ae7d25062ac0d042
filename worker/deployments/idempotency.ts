// docs/protocol.md §Idempotent requests: POST /api/v1/deployments with an
// Idempotency-Key. The key row is written in the deployment's own D1 batch, so "the
// key exists" and "the deployment exists" are one fact; a repeat (same key, same
// canonical body) gets the first deployment back and heals its undispatched targets.
import { and, eq, gt, sql } from "drizzle-orm";
import { IDEMPOTENCY_KEY_MAX, IDEMPOTENCY_KEY_TTL_MS, type CreateDeploymentBody } from "../../schema/api.ts";
import { idempotencyKeys } from "../../schema/d1.ts";
import { canonicalJson } from "./canonical-json.ts";
import { sha256Hex } from "../crypto.ts";
import { d1 } from "../../d1/db.ts";
import type { Env } from "../env.ts";
import { HttpError } from "../http-errors.ts";
import { undispatchedTargets } from "../../d1/dispatch-targets.ts";
import { dispatchAll } from "../../durable-objects/dispatch.ts";

export const IDEMPOTENCY_HEADER = "Idempotency-Key";

// Absent: null. Present: 1..IDEMPOTENCY_KEY_MAX printable ASCII characters, else 400.
export function idempotencyKey(request: Request): string | null {
  const raw = request.headers.get(IDEMPOTENCY_HEADER);
  if (raw === null) return null;
  if (raw.length === 0) throw new HttpError(400, `${IDEMPOTENCY_HEADER} must not be empty`);
  if (raw.length > IDEMPOTENCY_KEY_MAX) throw new HttpError(400, `${IDEMPOTENCY_HEADER} is longer than ${IDEMPOTENCY_KEY_MAX} characters`);
  if (!/^[\x20-\x7e]+$/.test(raw)) throw new HttpError(400, `${IDEMPOTENCY_HEADER} must be printable ASCII`);
  return raw;
}

export function requestHash(body: CreateDeploymentBody): Promise<string> {
  return sha256Hex(canonicalJson(body));
}

// A key older than IDEMPOTENCY_KEY_TTL_MS is as good as absent (the deployment's own
// batch replaces it, createDeployment).
export async function findKey(env: Env, key: string, now: number): Promise<{ requestHash: string; deploymentId: string } | null> {
  const row = await d1(env)
    .select({ requestHash: idempotencyKeys.requestHash, deploymentId: idempotencyKeys.deploymentId })
    .from(idempotencyKeys)
    .where(and(eq(idempotencyKeys.key, key), gt(idempotencyKeys.createdAt, now - IDEMPOTENCY_KEY_TTL_MS)))
    .get();
  return row ?? null;
}

// The cron's clean-up: expired keys go, a bounded number at a time.
export async function purgeExpiredKeys(env: Env, now: number, limit = 1000): Promise<number> {
  const res = await d1(env).run(
    sql`DELETE FROM idempotency_keys WHERE key IN (SELECT key FROM idempotency_keys WHERE created_at <= ${now - IDEMPOTENCY_KEY_TTL_MS} LIMIT ${limit})`,
  );
  return res.meta.changes;
}

// The same key again: the first deployment, re-dispatching whatever it had not yet
// handed to its agents (the first request may have been cut between batch and dispatch).
export async function replay(env: Env, key: string, stored: { requestHash: string; deploymentId: string }, hash: string): Promise<string> {
  if (stored.requestHash !== hash) {
    throw new HttpError(422, `${IDEMPOTENCY_HEADER} '${key}' was already used for a different request body; use a new key for a new deployment`, {
      deploymentId: stored.deploymentId,
    });
  }
  const targets = await undispatchedTargets(env, { deploymentId: stored.deploymentId });
  await dispatchAll(env, targets);
  return stored.deploymentId;
}
