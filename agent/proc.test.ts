// Process facts from /proc, against real processes: what the monitor (pid reuse of
// its pid files) and the step runner (docs/protocol.md §Steps outlive the worker:
// a step's processes are known by OUTPOST_STEP_ID in their environment) rely on.
import { afterEach, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { processCmdline, processEnviron, processesWithEnv } from "./proc.ts";

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) {
    try {
      process.kill(-c.pid!, "SIGKILL");
    } catch {
      // already gone
    }
  }
});

// A process of its own group (so afterEach can end it and what it started).
function start(cmd: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  const c = spawn(cmd, args, { detached: true, stdio: ["ignore", "pipe", "ignore"], env: { PATH: process.env.PATH, ...env } });
  children.push(c);
  return c;
}

const exited = (c: ChildProcess) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once("exit", () => r())));
const mark = () => `OUTPOST_PROC_TEST=${Math.random().toString(36).slice(2)}`;

describe("process facts", () => {
  it("read a process's arguments, and null once it is gone", async () => {
    const c = start("sleep", ["30"]);
    await new Promise((r) => c.once("spawn", r));
    expect(processCmdline(c.pid!)).toEqual(["sleep", "30"]);
    c.kill("SIGKILL");
    await exited(c);
    expect(processCmdline(c.pid!)).toBeNull();
  });

  it("read a process's environment entry by entry", async () => {
    const entry = mark();
    const c = start("sleep", ["30"], { [entry.split("=")[0]]: entry.split("=")[1], OTHER: "a=b" });
    await new Promise((r) => c.once("spawn", r));
    const env = processEnviron(c.pid!);
    expect(env).toContain(entry);
    expect(env).toContain("OTHER=a=b"); // split on NUL only: values may hold '='
    c.kill("SIGKILL");
    await exited(c);
    expect(processEnviron(c.pid!)).toBeNull();
  });

  it("find the live processes carrying an exact environment entry, children included", async () => {
    const entry = mark();
    const [name, value] = entry.split("=");
    const parent = start("/bin/sh", ["-c", "sleep 30 & echo $!; wait"], { [name]: value });
    const child = await new Promise<number>((r) => parent.stdout!.once("data", (d) => r(Number(String(d).trim()))));
    start("sleep", ["30"], { [name]: `${value}x` }); // same name, another value: not it
    start("sleep", ["30"]);
    const found = processesWithEnv(entry)!;
    expect(found.map((p) => p.pid).sort((a, b) => a - b)).toEqual([parent.pid!, child].sort((a, b) => a - b));
    expect(found.every((p) => p.pgrp === parent.pid)).toBe(true); // the group the step leads
    expect(processesWithEnv(`${name}=nobody-has-this`)).toEqual([]);
  });
});
