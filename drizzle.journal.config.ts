import { defineConfig } from "drizzle-kit";
// The agent journal (libSQL): applied by drizzle's libsql migrator when the agent opens it.
export default defineConfig({ dialect: "sqlite", schema: "./schema/journal.ts", out: "./schema/migrations/journal" });
