import { defineConfig } from "drizzle-kit";
// D1: flat NNNN_name.sql files, applied by `wrangler d1 migrations apply`.
export default defineConfig({ dialect: "sqlite", schema: "./schema/d1.ts", out: "./schema/migrations/d1" });
