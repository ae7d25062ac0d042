// The mask filter as a real process: a pipe in, a pipe out, a masks file that vanishes.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { MASK } from "./mask.ts";

const FILTER = fileURLToPath(new URL("./mask-filter.ts", import.meta.url));
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "outpost-mask-filter-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function masksFile(content: string): string {
  const path = join(dir, "masks.json");
  writeFileSync(path, content, { mode: 0o600 });
  return path;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("mask-filter process", () => {
  it("masks secrets split across writes, deletes the masks file before reading stdin, exits 0", async () => {
    const masks = masksFile(JSON.stringify(["hunter2", "line one\nline two"]));
    const child = spawn(process.execPath, [FILTER, masks], { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));

    child.stdin.write("password: hun");
    const t0 = Date.now();
    while (existsSync(masks) && Date.now() - t0 < 10_000) await sleep(10);
    expect(existsSync(masks)).toBe(false); // gone while the process still runs
    expect(child.exitCode).toBe(null);
    await sleep(50);
    child.stdin.write("ter2!\nkey:\nline one\nline two\nalone: line two\n");
    child.stdin.end("tail hunter");
    expect(await exited).toBe(0);
    expect(Buffer.concat(err).toString()).toBe("");
    expect(Buffer.concat(out).toString()).toBe(`password: ${MASK}!\nkey:\n${MASK}\nalone: ${MASK}\ntail hunter`);
  });

  it("masks the step's outputs file in place once stdin has ended; removes one it cannot mask", () => {
    const outputs = join(dir, "outputs");
    writeFileSync(outputs, 'token=hunter2\n{"k":"a\\"b"}\n');
    const masks = masksFile(JSON.stringify(["hunter2", 'a\\"b']));
    const r = spawnSync(process.execPath, [FILTER, masks, outputs], { input: "out hunter2\n" });
    expect(r.status).toBe(0);
    expect(r.stdout.toString()).toBe(`out ${MASK}\n`);
    expect(readFileSync(outputs, "utf8")).toBe(`token=${MASK}\n{"k":"${MASK}"}\n`);
    expect(existsSync(`${outputs}.masking`)).toBe(false);
    // Absent: nothing to do. Not a regular file: removed, and said so in the log.
    rmSync(outputs);
    expect(spawnSync(process.execPath, [FILTER, masksFile('["x"]'), outputs], { input: "" }).status).toBe(0);
    expect(existsSync(outputs)).toBe(false);
    mkdirSync(outputs);
    const bad = spawnSync(process.execPath, [FILTER, masksFile('["x"]'), outputs], { input: "" });
    expect(bad.status).toBe(0);
    expect(existsSync(outputs)).toBe(false);
    expect(bad.stdout.toString()).toMatch(/outputs file could not be masked \(not a regular file\); it was removed/);
  });

  it("passes a large stream through whole (back-pressure), masking every occurrence", () => {
    const masks = masksFile(JSON.stringify(["S3CRET"]));
    const line = "x".repeat(1000) + "S3CRET\n";
    const input = line.repeat(5000); // ~5 MB
    const r = spawnSync(process.execPath, [FILTER, masks], { input, maxBuffer: 64 * 1024 * 1024, timeout: 60_000 });
    expect(r.status).toBe(0);
    expect(r.stdout.toString()).toBe(("x".repeat(1000) + `${MASK}\n`).repeat(5000));
  });

  it("refuses a masks file that is not a JSON array of strings: exit 2, no output, file deleted", () => {
    for (const bad of ['["hunter2"', '{"a":"b"}', '["ok", 3]']) {
      const masks = masksFile(bad);
      const r = spawnSync(process.execPath, [FILTER, masks], { input: "secret stuff", timeout: 30_000 });
      expect(r.status, bad).toBe(2);
      expect(r.stdout.length, bad).toBe(0);
      expect(r.stderr.toString(), bad).toMatch(/masks file/);
      expect(r.stderr.toString(), bad).not.toContain("hunter2"); // never quotes what it holds
      expect(existsSync(masks), bad).toBe(false);
    }
  });

  it("refuses a missing masks file or none at all: exit 2", () => {
    const missing = spawnSync(process.execPath, [FILTER, join(dir, "nope.json")], { input: "x", timeout: 30_000 });
    expect(missing.status).toBe(2);
    expect(missing.stderr.toString()).toMatch(/cannot read the masks file/);
    const none = spawnSync(process.execPath, [FILTER], { input: "x", timeout: 30_000 });
    expect(none.status).toBe(2);
    expect(none.stderr.toString()).toMatch(/usage/);
  });

  it("with an empty list of masks copies stdin unchanged", () => {
    const masks = masksFile("[]");
    const input = Buffer.from([0, 1, 2, 255, 10, 42]);
    const r = spawnSync(process.execPath, [FILTER, masks], { input, timeout: 30_000 });
    expect(r.status).toBe(0);
    expect(Buffer.compare(r.stdout, input)).toBe(0);
  });
});
