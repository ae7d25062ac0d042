import { defineConfig } from "vitest/config";

// Node-side tests: pure logic beside its code, the agent as real processes, the
// end-to-end path and the web page in headless Chromium, all against a real
// local server (wrangler dev) started by the tests themselves.
export default defineConfig({
  test: {
    name: "node",
    include: ["agent/**/*.test.ts", "schema/**/*.test.ts", "scripts/**/*.test.ts", "test/agent/**/*.test.ts", "test/e2e/**/*.test.ts", "test/web/**/*.test.ts", "test/chaos/**/*.test.ts", "test/plugins/**/*.test.ts", "bench/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    fileParallelism: false,
  },
});
