// docs/api.md "Rate limits": repeated failed authentication — a bad API token, a bad
// or revoked agent credential, a bad registration token — answers 429 once an address
// has failed too often. Only failures are counted, and a valid credential is checked
// before the limiter is asked, so a valid credential is never locked out by someone
// else's failures, and a burst of valid registrations is never refused.
import type { Env } from "./env.ts";
import { HttpError } from "./http-errors.ts";

// Must match the [[ratelimits]] period in wrangler.toml.
export const AUTH_FAILURE_WINDOW_SECONDS = 60;

// Cloudflare sets CF-Connecting-IP on every request that reaches the Worker.
export function clientAddress(request: Request): string {
  return request.headers.get("cf-connecting-ip") ?? "unknown";
}

// Records one failure for the caller's address; throws 429 if the address is over its
// limit, else returns so that the caller throws its own 401. Without the binding (a
// deployment that left it out) nothing is limited.
export async function countAuthFailure(request: Request, env: Env): Promise<void> {
  if (!env.AUTH_FAILURES) return;
  const { success } = await env.AUTH_FAILURES.limit({ key: clientAddress(request) });
  if (!success) {
    throw new HttpError(429, `too many failed authentication attempts from this address; wait ${AUTH_FAILURE_WINDOW_SECONDS} s`, {}, {
      "retry-after": String(AUTH_FAILURE_WINDOW_SECONDS),
    });
  }
}
