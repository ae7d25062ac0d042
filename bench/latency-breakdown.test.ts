import { describe, expect, it } from "vitest";
import { parseTrace, phasesOf } from "./latency-breakdown.ts";

const trace = (start: number) =>
  ["notified", "pulled", "stored", "spawned", "exited", "journaled", "report-sent", "report-acked"].map((e, i) => `${start + (i + 1) * 2} ${e} x`).join("\n");

describe("latency breakdown", () => {
  it("places each deployment's agent marks inside its window, in path order", () => {
    const marks = parseTrace(`${trace(1000)}\n${trace(2000)}\n1500.5 garbage\nnot a line`);
    expect(marks).toHaveLength(16);
    const p = phasesOf({ postAt: 2000, acceptedAt: 2001, seenAt: 2020 }, marks)!;
    expect(p).toEqual({ notify: 2, pull: 2, store: 2, launch: 2, run: 2, finish: 2, hold: 2, report: 2, visible: 4 });
    expect(Object.values(p).reduce((a, b) => a + b, 0)).toBe(20);
  });

  it("leaves out a deployment whose marks are missing or fall outside its window", () => {
    const marks = parseTrace(trace(1000).split("\n").filter((l) => !l.includes("exited")).join("\n"));
    expect(phasesOf({ postAt: 1000, acceptedAt: 1001, seenAt: 1030 }, marks)).toBeNull();
    expect(phasesOf({ postAt: 1000, acceptedAt: 1001, seenAt: 1010 }, parseTrace(trace(1000)))).toBeNull();
  });
});
