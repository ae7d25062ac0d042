import type { AgentChannel } from "../durable-objects/agent-channel.ts";

// Bindings from wrangler.toml plus the optional vars/secrets the code reads.
export interface Env {
  DB: D1Database;
  AGENT_CHANNEL: DurableObjectNamespace<AgentChannel>;
  ASSETS?: Fetcher;
  /** Counts failed authentications per client address (worker/auth-failures.ts). */
  AUTH_FAILURES?: RateLimit;
  /** Admin bearer token for /api/v1 (a secret in production). Unset: only api_tokens rows work. */
  OUTPOST_ADMIN_TOKEN?: string;
  /** Presence: an agent without a heartbeat for this long is offline (default TIMING.offlineAfterMs). */
  OUTPOST_OFFLINE_AFTER_MS?: string;
  /** "1" enables /api/v1/test-hooks/* (the chaos suite's DO eviction); anything else hides them (404). */
  OUTPOST_TEST_HOOKS?: string;
}
