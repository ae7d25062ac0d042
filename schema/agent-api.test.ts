// The wire rules that need no runtime: derived ids.
import { describe, expect, it } from "vitest";
import { commandIdFor, report, reportIds } from "./agent-api.ts";

describe("derived ids", () => {
  it("one command per deployment and agent", () => {
    expect(commandIdFor("d1", "a1")).toBe("d1:a1");
  });

  it("a report's id is exactly the one derived from its step and kind", () => {
    const started = { type: "step-started", id: reportIds.started("s1"), deploymentId: "d1", stepId: "s1", at: 1 };
    expect(report.safeParse(started).success).toBe(true);
    for (const id of ["s1:finished", "s2:started", "revoked:1", "s1:started "]) expect(report.safeParse({ ...started, id }).success, id).toBe(false);
    const finished = { type: "step-finished", id: reportIds.finished("s1"), deploymentId: "d1", stepId: "s1", status: "succeeded", exitCode: 0, reason: null, at: 1 };
    expect(report.safeParse(finished).success).toBe(true);
    expect(report.safeParse({ ...finished, id: "s1:started" }).success).toBe(false);
  });
});
