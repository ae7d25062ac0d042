import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// Worker + Durable Object tests, run inside workerd with the real bindings of
// wrangler.toml (local D1, the AgentChannel namespace). Storage is isolated per file.
export default defineConfig({
  plugins: [
    cloudflareTest(async () => ({
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: {
        bindings: {
          OUTPOST_ADMIN_TOKEN: "test-admin",
          // Bytes 0..31: a fixed test key (base64 of 32 bytes), never a real one.
          OUTPOST_SECRETS_KEY: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
          // Shorter than the 30 s default, so a test can tell that the setting is honoured.
          OUTPOST_OFFLINE_AFTER_MS: "20000",
          OUTPOST_TEST_HOOKS: "1",
          // Test release keys: the private halves are in test/worker/fixtures/release-keys.ts.
          OUTPOST_RELEASE_PUBLIC_KEYS: [
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAf16mD9lqgvQOk8e71vDAcP9n55rOfY+byg/8wbGPgzc=\n-----END PUBLIC KEY-----\n",
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA2wvFgd75vTEU36AaaFhZYBZqAnhf/0B2Bt4+WgFvTYk=\n-----END PUBLIC KEY-----\n",
          ].join(""),
          TEST_MIGRATIONS: await readD1Migrations("schema/migrations/d1"),
        },
      },
    })),
  ],
  test: {
    name: "worker",
    include: ["test/worker/**/*.test.ts", "worker/**/*.test.ts", "durable-objects/**/*.test.ts", "d1/**/*.test.ts"],
    setupFiles: ["./test/worker/apply-migrations.ts"],
    testTimeout: 30_000,
  },
});
