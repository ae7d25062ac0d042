// A step's OUTPOST_OUTPUTS file: both forms, the limits, masking, odd files.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LIMITS } from "../../schema/limits.ts";
import { MAX_FILE_BYTES, MAX_PROBLEMS, readOutputs } from "./outputs-file.ts";

let dir: string;
let file: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "outpost-outputs-"));
  file = join(dir, "outputs");
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const anyKey = { declared: null, secrets: [] };

describe("readOutputs", () => {
  it("absent file: no outputs, no problem", () => {
    expect(readOutputs(join(dir, "never-written"), anyKey)).toEqual({ outputs: {}, problems: [] });
  });

  it("reads key=value lines: blanks and comments skipped, '=' in values kept, last value wins", () => {
    writeFileSync(file, "# made by build.sh\nversion=1.2.3\r\n\n  url = https://x.example/?a=b\nversion=1.2.4\nempty=\n");
    expect(readOutputs(file, anyKey)).toEqual({
      outputs: { version: "1.2.4", url: " https://x.example/?a=b", empty: "" },
      problems: [],
    });
  });

  it("a line without '=' is a problem naming its line, not its text", () => {
    writeFileSync(file, "ok=1\nhunter2\n");
    const r = readOutputs(file, anyKey);
    expect(r.outputs).toEqual({ ok: "1" });
    expect(r.problems).toEqual(["line 2 of the outputs file has no '=' (expected key=value)"]);
  });

  it("reads a JSON object: strings, numbers and booleans as text; other values are problems", () => {
    writeFileSync(file, ' \n{"version":"2.0.0","count":3,"ratio":0.5,"ok":false,"nothing":null,"list":[1],"obj":{},"huge":1e400}');
    const r = readOutputs(file, anyKey);
    expect(r.outputs).toEqual({ version: "2.0.0", count: "3", ratio: "0.5", ok: "false" });
    expect(r.problems).toEqual([
      "output 'nothing' dropped: only strings, numbers and booleans are kept, it is null",
      "output 'list' dropped: only strings, numbers and booleans are kept, it is an array",
      "output 'obj' dropped: only strings, numbers and booleans are kept, it is an object",
      "output 'huge' dropped: only strings, numbers and booleans are kept, it is a number that is not finite",
    ]);
  });

  it("broken JSON or a JSON value that is not an object is a problem", () => {
    writeFileSync(file, '{"a": ');
    expect(readOutputs(file, anyKey).problems).toEqual(["the outputs file is not valid JSON"]);
    writeFileSync(file, '{"token": "hunter2-is-long" x}');
    expect(readOutputs(file, { declared: null, secrets: ["hunter2-is-long"] }).problems).toEqual(["the outputs file is not valid JSON (at position 28)"]);
    writeFileSync(file, "{}");
    expect(readOutputs(file, anyKey)).toEqual({ outputs: {}, problems: [] });
    writeFileSync(file, "[1, 2]"); // not starting with '{': read as lines
    expect(readOutputs(file, anyKey).problems).toEqual(["line 1 of the outputs file has no '=' (expected key=value)"]);
  });

  it("drops keys that are not [A-Za-z0-9_-]{1,64}, and keeps '__proto__' as a plain key", () => {
    writeFileSync(file, `{"bad key":"x","a.b":"y","${"k".repeat(65)}":"z","${"k".repeat(64)}":"ok","__proto__":"p"}`);
    const r = readOutputs(file, anyKey);
    expect(Object.keys(r.outputs)).toEqual(["k".repeat(64), "__proto__"]);
    expect(Object.getPrototypeOf(r.outputs)).toBe(Object.prototype);
    expect(r.outputs.__proto__).toBe("p");
    expect(r.problems).toHaveLength(3);
    expect(r.problems[0]).toBe("output 'bad key' dropped: a key is 1-64 letters, digits, '_' or '-'");
    expect(r.problems[2]).toContain(`'${"k".repeat(64)}…'`);
  });

  it("with declared outputs keeps only those, a problem for each other key", () => {
    writeFileSync(file, "version=1\nextra=2\nother=3\n");
    const r = readOutputs(file, { declared: ["version", "digest"], secrets: [] });
    expect(r.outputs).toEqual({ version: "1" });
    expect(r.problems).toEqual(["output 'extra' dropped: the step does not declare it", "output 'other' dropped: the step does not declare it"]);
  });

  it(`keeps at most ${LIMITS.outputsPerStep} keys`, () => {
    writeFileSync(file, Array.from({ length: LIMITS.outputsPerStep + 2 }, (_, i) => `k${i}=${i}`).join("\n"));
    const r = readOutputs(file, anyKey);
    expect(Object.keys(r.outputs)).toHaveLength(LIMITS.outputsPerStep);
    expect(r.outputs[`k${LIMITS.outputsPerStep - 1}`]).toBe(String(LIMITS.outputsPerStep - 1));
    expect(r.problems).toEqual([
      `output 'k${LIMITS.outputsPerStep}' dropped: at most ${LIMITS.outputsPerStep} outputs per step`,
      `output 'k${LIMITS.outputsPerStep + 1}' dropped: at most ${LIMITS.outputsPerStep} outputs per step`,
    ]);
  });

  it(`caps the values at ${LIMITS.outputsBytesPerStep} bytes in all, counting UTF-8 bytes`, () => {
    const half = LIMITS.outputsBytesPerStep / 2;
    const big = "é".repeat(half / 2); // half the cap in bytes
    writeFileSync(file, `a=${big}\nb=${big}\nc=x\n`);
    const full = readOutputs(file, anyKey);
    expect(Object.keys(full.outputs)).toEqual(["a", "b"]);
    expect(full.problems).toEqual([`output 'c' dropped: its 1 bytes would take the step's outputs past ${LIMITS.outputsBytesPerStep} bytes`]);
    writeFileSync(file, `a=${big}\nhuge=${"x".repeat(half + 1)}\nsmall=ok\n`);
    const r = readOutputs(file, anyKey);
    expect(r.outputs).toEqual({ a: big, small: "ok" });
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]).toMatch(/^output 'huge' dropped/);
  });

  it("masks secrets in values and in problems", () => {
    writeFileSync(file, "token=abc hunter2 def\nhunter2=x\n");
    const r = readOutputs(file, { declared: ["token"], secrets: ["hunter2"] });
    expect(r.outputs).toEqual({ token: "abc *** def" });
    expect(r.problems).toEqual(["output '***' dropped: the step does not declare it"]);
  });

  it("does not read a symlink, a FIFO, a directory or a file over the size cap", () => {
    writeFileSync(join(dir, "target"), "a=1\n");
    symlinkSync(join(dir, "target"), file);
    expect(readOutputs(file, anyKey)).toEqual({ outputs: {}, problems: ["the outputs file is a symbolic link: not read"] });
    const fifo = join(dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    expect(readOutputs(fifo, anyKey)).toEqual({ outputs: {}, problems: ["the outputs file is not a regular file: not read"] });
    mkdirSync(join(dir, "d"));
    expect(readOutputs(join(dir, "d"), anyKey).problems).toHaveLength(1);
    const large = join(dir, "large");
    writeFileSync(large, "a=" + "x".repeat(MAX_FILE_BYTES));
    expect(readOutputs(large, anyKey).problems[0]).toMatch(/more than 1048576: not read/);
  });

  it(`reports at most ${MAX_PROBLEMS} problems`, () => {
    writeFileSync(file, "nope\n".repeat(50));
    const r = readOutputs(file, anyKey);
    expect(r.problems).toHaveLength(MAX_PROBLEMS);
    expect(r.problems[MAX_PROBLEMS - 1]).toBe(`… and ${50 - MAX_PROBLEMS + 1} more problems`);
  });
});
