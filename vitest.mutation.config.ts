import { defineConfig } from "vitest/config";

// The unit tests of the pure decision modules — no workerd, no processes — which
// StrykerJS runs against every mutant of those modules (stryker.config.json,
// `npm run test:mutation`). They are also part of the worker and node suites.
export const PURE_TESTS = [
  "durable-objects/rules.test.ts",
  "durable-objects/rollout-rules.test.ts",
  "schema/expressions.test.ts",
  "agent/steps/mask.test.ts",
  "durable-objects/uptime.test.ts",
  "durable-objects/sockets.test.ts",
  "d1/log-plan.test.ts",
  "worker/deployments/canonical-json.test.ts",
  "schema/agent-api.test.ts",
  "schema/steps.test.ts",
  "agent/backoff.test.ts",
  "agent/errors.test.ts",
  "agent/url-policy.test.ts",
  "agent/worker/scheduling.test.ts",
  "agent/worker/command-intake.test.ts",
  "agent/worker/resync.test.ts",
  "agent/worker/report-sender.test.ts",
  "agent/worker/upload-outcome.test.ts",
];

export default defineConfig({
  test: { name: "mutation", include: PURE_TESTS, environment: "node" },
});
