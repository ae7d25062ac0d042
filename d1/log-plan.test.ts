import { describe, expect, it } from "vitest";
import { planLogAppend } from "./log-plan.ts";

const MAX = 100;

describe("planLogAppend", () => {
  it("appends a chunk that starts exactly at the stored length", () => {
    expect(planLogAppend(10, 10, 5, MAX)).toEqual({ kind: "append", skip: 0, newLength: 15 });
  });
  it("skips the bytes it already holds when a chunk overlaps", () => {
    expect(planLogAppend(10, 6, 8, MAX)).toEqual({ kind: "append", skip: 4, newLength: 14 });
  });
  it("treats a retried chunk it fully holds as done", () => {
    expect(planLogAppend(10, 5, 5, MAX)).toEqual({ kind: "have-all", length: 10 });
    expect(planLogAppend(10, 0, 0, MAX)).toEqual({ kind: "have-all", length: 10 });
  });
  it("refuses a chunk that would leave a gap", () => {
    expect(planLogAppend(10, 11, 1, MAX)).toEqual({ kind: "gap" });
  });
  it("refuses to grow past the per-step cap, but accepts reaching it", () => {
    expect(planLogAppend(90, 90, 11, MAX)).toEqual({ kind: "too-large", length: 90 });
    expect(planLogAppend(90, 90, 10, MAX)).toEqual({ kind: "append", skip: 0, newLength: 100 });
  });
});
