// Step output capped on disk like the server's copy (LIMITS.logBytesPerStep), with a real O_APPEND writer.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LIMITS } from "../../schema/limits.ts";
import { capOutput, OUTPUT_CAP_TEST_ENV, outputCapBytes } from "./output-cap.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "outpost-cap-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("step output cap", () => {
  it("cuts an O_APPEND file back to the cap, keeping its head; later writes land at the new end", () => {
    const path = join(dir, "output.log");
    const fd = openSync(path, "a");
    writeSync(fd, "a".repeat(100));
    expect(capOutput(path, 64)).toBe(36);
    expect(statSync(path).size).toBe(64);
    writeSync(fd, "bb");
    closeSync(fd);
    expect(readFileSync(path, "utf8")).toBe("a".repeat(64) + "bb");
    expect(capOutput(path, 64)).toBe(2);
    expect(capOutput(path, 64)).toBe(0);
    expect(capOutput(join(dir, "missing"), 64)).toBe(0);
  });

  it("is the server's cap unless a test lowers it; never above it", () => {
    expect(outputCapBytes({})).toBe(LIMITS.logBytesPerStep);
    expect(outputCapBytes({ [OUTPUT_CAP_TEST_ENV]: "65536" })).toBe(65536);
    expect(outputCapBytes({ [OUTPUT_CAP_TEST_ENV]: String(LIMITS.logBytesPerStep * 2) })).toBe(LIMITS.logBytesPerStep);
    expect(outputCapBytes({ [OUTPUT_CAP_TEST_ENV]: "x" })).toBe(LIMITS.logBytesPerStep);
  });
});
