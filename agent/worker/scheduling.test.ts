// docs/protocol.md §Steps outlive the worker (recovery decisions) and §Commands (order, concurrency).
import { describe, expect, it } from "vitest";
import type { StepStatus } from "../../schema/steps.ts";
import { nextStep, pickCommandsToStart, recoverRunningStep, stepDeadline, type StepLike } from "./scheduling.ts";

const steps = (...states: StepStatus[]): StepLike[] => states.map((state, i) => ({ stepId: `s${i}`, position: i, state }));

describe("scheduling", () => {
  it("starts unfinished commands oldest first up to the limit", () => {
    expect(pickCommandsToStart([5, 3, 9, 7], new Set(), 2)).toEqual([3, 5]);
    expect(pickCommandsToStart([3, 5, 7, 9], new Set([3]), 2)).toEqual([5]);
    expect(pickCommandsToStart([3, 5], new Set([3, 5]), 4)).toEqual([]);
    expect(pickCommandsToStart([3, 5, 7], new Set([1, 2, 4, 6]), 4)).toEqual([]);
  });

  it("runs steps in position order", () => {
    const s = steps("pending", "pending");
    expect(nextStep([s[1], s[0]])).toEqual({ kind: "start", step: s[0] });
    expect(nextStep(steps("succeeded", "pending"))).toMatchObject({ kind: "start", step: { stepId: "s1" } });
    // A skipped step is passed over like a succeeded one, never started.
    expect(nextStep(steps("skipped", "pending"))).toMatchObject({ kind: "start", step: { stepId: "s1" } });
  });

  it("resumes a step the journal says is running", () => {
    expect(nextStep(steps("succeeded", "running", "pending"))).toMatchObject({ kind: "resume", step: { stepId: "s1" } });
  });

  it("ends after the last step", () => {
    expect(nextStep(steps("succeeded", "succeeded"))).toEqual({ kind: "end", skip: [], reason: "", failed: false });
  });

  it("skips the later steps once one failed, was interrupted or canceled", () => {
    for (const state of ["failed", "interrupted", "canceled"] as const) {
      const n = nextStep(steps("succeeded", state, "pending", "pending"));
      expect(n.kind).toBe("end");
      if (n.kind === "end") {
        expect(n.skip.map((x) => x.stepId)).toEqual(["s2", "s3"]);
        expect(n.failed).toBe(true);
        expect(n.reason).toContain(state);
      }
    }
    // skipped already (a worker died between skipping and ending the command): nothing left to skip
    expect(nextStep(steps("failed", "skipped"))).toMatchObject({ kind: "end", skip: [] });
  });

  it("recovers a running step: status file, live process, safe re-run, or interrupted", () => {
    const r = (statusFileExists: boolean, processAlive: boolean, retry: "never" | "safe", timedOut = false) =>
      recoverRunningStep({ statusFileExists, processAlive, timedOut, retry });
    expect(r(true, false, "never")).toBe("finish-from-status");
    expect(r(true, true, "safe")).toBe("finish-from-status");
    expect(r(false, true, "never")).toBe("reattach");
    expect(r(false, false, "safe")).toBe("rerun");
    expect(r(false, false, "never")).toBe("interrupt");
    // Given up as timed out by a worker that died while killing it: a timeout, whatever
    // the killed wrapper left (no status, or one); never re-run, never "interrupted".
    expect(r(false, false, "safe", true)).toBe("finish-timed-out");
    expect(r(false, false, "never", true)).toBe("finish-timed-out");
    expect(r(true, false, "never", true)).toBe("finish-timed-out");
    // Still alive: re-attach, and its passed deadline kills it at once.
    expect(r(false, true, "safe", true)).toBe("reattach");
  });

  it("counts a timeout from the step's start", () => {
    expect(stepDeadline(1_000, null, 5_000)).toBeNull();
    expect(stepDeadline(1_000, 3, 5_000)).toBe(4_000);
    expect(stepDeadline(null, 3, 5_000)).toBe(8_000);
  });
});
