import { describe, expect, it, vi } from "vitest";
import { agentLostDeadline, applyFinished, deploymentOutcome, parseOfflineAfterMs, placeOnServerClock, projectionBackoffMs, splitByLiveness } from "./rules.ts";

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
  it("takes the latest of the live sockets, whatever their order, and a time of 0 counts", () => {
    expect(splitByLiveness([{ lastSeenAt: 70 }, { lastSeenAt: 100 }, { lastSeenAt: 90 }], 100, 30).lastSeenAt).toBe(100);
    expect(splitByLiveness([{ lastSeenAt: 0 }], 10, 30).lastSeenAt).toBe(0);
  });
});

describe("parseOfflineAfterMs", () => {
  it("takes a sane integer and falls back otherwise", () => {
    expect(parseOfflineAfterMs(undefined, 30_000)).toBe(30_000);
    expect(parseOfflineAfterMs("5000", 30_000)).toBe(5000);
    expect(parseOfflineAfterMs("abc", 30_000)).toBe(30_000);
    expect(parseOfflineAfterMs("10", 30_000)).toBe(30_000);
    expect(parseOfflineAfterMs("   ", 30_000)).toBe(30_000);
    expect(parseOfflineAfterMs("1000", 30_000)).toBe(1000); // the smallest accepted
    expect(parseOfflineAfterMs("999", 30_000)).toBe(30_000);
    expect(parseOfflineAfterMs("1500.5", 30_000)).toBe(30_000);
  });
  it("says which setting it ignored, and stays quiet about one left blank", () => {
    const logged = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      parseOfflineAfterMs("  ", 30_000);
      parseOfflineAfterMs(undefined, 30_000);
      expect(logged).not.toHaveBeenCalled();
      parseOfflineAfterMs("soon", 30_000);
      expect(logged).toHaveBeenCalledOnce();
      expect(String(logged.mock.calls[0][0])).toMatch(/^OUTPOST_OFFLINE_AFTER_MS="soon" is not an integer ≥ 1000; using 30000$/);
    } finally {
      logged.mockRestore();
    }
  });
});

// docs/protocol.md §Projection, §Agent lost
describe("applyFinished", () => {
  const report = { status: "succeeded" as const, reason: null };
  it("ends an active step with the agent's result", () => {
    expect(applyFinished({ status: "running", reason: null }, report)).toEqual({ status: "succeeded", reason: null });
    expect(applyFinished({ status: "pending", reason: null }, { status: "failed", reason: "x" })).toEqual({ status: "failed", reason: "x" });
  });
  it("never moves a terminal step, except once out of agent-lost, flagged late", () => {
    expect(applyFinished({ status: "succeeded", reason: null }, { status: "failed", reason: null })).toBeNull();
    expect(applyFinished({ status: "canceled", reason: "agent revoked" }, report)).toBeNull();
    // Only the exact pair failed + agent-lost takes a late result.
    expect(applyFinished({ status: "failed", reason: "exit code 1" }, report)).toBeNull();
    expect(applyFinished({ status: "canceled", reason: "agent-lost" }, report)).toBeNull();
    const late = applyFinished({ status: "failed", reason: "agent-lost" }, report);
    expect(late).toEqual({ status: "succeeded", reason: "agent-lost; result arrived later" });
    expect(applyFinished(late!, { status: "failed", reason: null })).toBeNull();
    expect(applyFinished({ status: "failed", reason: "agent-lost" }, { status: "failed", reason: "exit 3" })?.reason).toBe("agent-lost; result arrived later: exit 3");
  });
  it("does not let a late success make the deployment succeed", () => {
    expect(deploymentOutcome([{ status: "succeeded", reason: "agent-lost; result arrived later" }])).toBe("failed");
    expect(deploymentOutcome([{ status: "succeeded", reason: null }, "succeeded"])).toBe("succeeded");
  });
});

describe("agentLostDeadline", () => {
  it("counts from the later of going offline and the command's creation", () => {
    expect(agentLostDeadline(1000, 5000, 60)).toBe(65_000);
    expect(agentLostDeadline(9000, 5000, 60)).toBe(69_000);
    expect(agentLostDeadline(null, 5000, 1)).toBe(6000);
  });
});

// docs/protocol.md §Reports, "Times"
describe("placeOnServerClock", () => {
  it("shifts the agent's time by the batch offset and never past the moment of receipt", () => {
    // The agent's clock is 10 min behind: offset +10 min puts its times right.
    expect(placeOnServerClock(1_000_000, 600_000, 2_000_000)).toBe(1_600_000);
    // A clock ahead, or a report about the future: clamped to the receipt.
    expect(placeOnServerClock(5_000_000, 0, 2_000_000)).toBe(2_000_000);
    expect(placeOnServerClock(100, -1_000, 2_000_000)).toBe(0);
  });
});
