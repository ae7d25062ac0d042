// Lets `env` from "cloudflare:workers" / "cloudflare:test" carry the project's bindings.
declare namespace Cloudflare {
  interface Env extends import("../worker/env.ts").Env {
    /** Only in tests: D1 migrations read by vitest.worker.config.ts. */
    TEST_MIGRATIONS?: import("cloudflare:test").D1Migration[];
  }
}
