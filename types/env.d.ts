// Lets `env` / `exports` from "cloudflare:workers" carry the project's bindings and main module.
import type { D1Migration } from "cloudflare:test";
import type { Env as WorkerEnv } from "../worker/env.ts";

declare global {
  namespace Cloudflare {
    interface Env extends WorkerEnv {
      /** Only in tests: D1 migrations read by vitest.worker.config.ts. */
      TEST_MIGRATIONS?: D1Migration[];
    }
    interface GlobalProps {
      mainModule: typeof import("../worker/index.ts");
      durableNamespaces: "AgentChannel";
    }
  }
}
