import { describe, expect, it } from "vitest";
import { lateResultReason, SERVER_REASONS, STEP_REASON_MAX } from "./steps.ts";

describe("lateResultReason", () => {
  it("says the result came after agent-lost, with the agent's own reason clipped to the reason limit", () => {
    expect(lateResultReason(null)).toBe(SERVER_REASONS.lateResult);
    expect(lateResultReason("exit 3")).toBe(`${SERVER_REASONS.lateResult}: exit 3`);
    const long = lateResultReason("x".repeat(STEP_REASON_MAX + 100));
    expect(long).toBe(`${SERVER_REASONS.lateResult}: ${"x".repeat(STEP_REASON_MAX)}`);
  });
});
