// The Worker's bindings (wrangler.toml) and the optional vars/secrets the code reads,
// declared once as the global Cloudflare.Env: the Worker (worker/env.ts) and the
// Durable Objects (DurableObject<Cloudflare.Env>) both type over it, so neither
// imports the other for its environment.
import type { D1Migration } from "cloudflare:test";

declare global {
  namespace Cloudflare {
    interface Env {
      DB: D1Database;
      PLUGINS: R2Bucket;
      /** Agent packages (worker/routes/agent-versions.ts). */
      AGENT_PACKAGES: R2Bucket;
      /** Step output bytes; D1's step_log_chunks is their index (d1/logs.ts). */
      LOGS: R2Bucket;
      AGENT_CHANNEL: DurableObjectNamespace<import("../durable-objects/agent-channel.ts").AgentChannel>;
      DEPLOYMENT_COORDINATOR: DurableObjectNamespace<import("../durable-objects/deployment-coordinator.ts").DeploymentCoordinator>;
      ASSETS?: Fetcher;
      /** Counts failed authentications per client address (worker/auth-failures.ts). */
      AUTH_FAILURES?: RateLimit;
      /** Admin bearer token for /api/v1 (a secret in production). Unset: only api_tokens rows work. */
      OUTPOST_ADMIN_TOKEN?: string;
      /**
       * Key of the secrets (a secret in production): base64 or base64url of 32 random bytes,
       * e.g. `openssl rand -base64 32`. Values are sealed with it in D1 (worker/secrets-crypto.ts);
       * unset or malformed: the secrets endpoints answer 503. Changing it makes every stored
       * secret unreadable: they must be set again.
       */
      OUTPOST_SECRETS_KEY?: string;
      /**
       * The release keys agent packages must be signed with: one or more Ed25519 SPKI PEM
       * public keys, concatenated (line breaks may be spaces). Unset: uploads answer 503.
       */
      OUTPOST_RELEASE_PUBLIC_KEYS?: string;
      /** Presence: an agent without a heartbeat for this long is offline (default TIMING.offlineAfterMs). */
      OUTPOST_OFFLINE_AFTER_MS?: string;
      /** "1" enables /api/v1/test-hooks/* (the chaos suite's DO eviction); anything else hides them (404). */
      OUTPOST_TEST_HOOKS?: string;
      /** Only in tests: D1 migrations read by vitest.worker.config.ts. */
      TEST_MIGRATIONS?: D1Migration[];
    }
    interface GlobalProps {
      mainModule: typeof import("../worker/index.ts");
      durableNamespaces: "AgentChannel" | "DeploymentCoordinator";
    }
  }
}
