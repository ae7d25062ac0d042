// Every test file starts from a D1 with the project's migrations applied.
import { applyD1Migrations } from "cloudflare:test";
import { env } from "cloudflare:workers";

if (!env.TEST_MIGRATIONS) throw new Error("TEST_MIGRATIONS binding missing: see vitest.worker.config.ts");
await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);
