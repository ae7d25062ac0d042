import { defineConfig } from "drizzle-kit";
// The AgentChannel DO's SQLite: bundled migrations.js, applied in the DO constructor.
export default defineConfig({ dialect: "sqlite", driver: "durable-sqlite", schema: "./schema/ledger.ts", out: "./schema/migrations/ledger" });
