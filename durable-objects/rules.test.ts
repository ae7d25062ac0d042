import { describe, expect, it } from "vitest";
import { commandIdFor, deploymentOutcome, parseOfflineAfterMs, projectionBackoffMs, splitByLiveness } from "./rules.ts";

describe("deploymentOutcome", () => {
  it("is undecided while any step is pending or running", () => {
    expect(deploymentOutcome(["succeeded", "running"])).toBeNull();
    expect(deploymentOutcome(["pending"])).toBeNull();
    expect(deploymentOutcome([])).toBeNull();
  });
  it("succeeds only when every step succeeded", () => {
    expect(deploymentOutcome(["succeeded", "succeeded"])).toBe("succeeded");
  });
  it("fails when all steps ended and any did not succeed", () => {
    expect(deploymentOutcome(["succeeded", "failed"])).toBe("failed");
    expect(deploymentOutcome(["interrupted"])).toBe("failed");
    expect(deploymentOutcome(["skipped", "succeeded"])).toBe("failed");
  });
});

describe("projectionBackoffMs", () => {
  it("doubles from one second and stops at a minute", () => {
    expect([0, 1, 2, 3, 7, 50].map(projectionBackoffMs)).toEqual([1000, 1000, 2000, 4000, 60_000, 60_000]);
  });
});

describe("splitByLiveness", () => {
  it("separates sockets heard from within the window from silent ones", () => {
    const { alive, dead, lastSeenAt } = splitByLiveness([{ lastSeenAt: 100 }, { lastSeenAt: 40 }, { lastSeenAt: 70 }], 100, 30);
    expect(alive.map((s) => s.lastSeenAt)).toEqual([100, 70]);
    expect(dead.map((s) => s.lastSeenAt)).toEqual([40]);
    expect(lastSeenAt).toBe(100);
  });
  it("has no last-seen time when nothing is alive", () => {
    expect(splitByLiveness([{ lastSeenAt: 0 }], 100, 30).lastSeenAt).toBeNull();
  });
});

describe("parseOfflineAfterMs", () => {
  it("takes a sane integer and falls back otherwise", () => {
    expect(parseOfflineAfterMs(undefined, 30_000)).toBe(30_000);
    expect(parseOfflineAfterMs("5000", 30_000)).toBe(5000);
    expect(parseOfflineAfterMs("abc", 30_000)).toBe(30_000);
    expect(parseOfflineAfterMs("10", 30_000)).toBe(30_000);
  });
});

describe("commandIdFor", () => {
  it("derives one command id per deployment and agent", () => {
    expect(commandIdFor("d1", "a1")).toBe("d1:a1");
  });
});
