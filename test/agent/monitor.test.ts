// The monitor and worker as real processes: restart of a killed worker, clean
// stop on SIGTERM, and the worker leaving when its monitor is killed
// (docs/protocol.md §Steps outlive the worker: the processes around the steps).
import { afterEach, describe, expect, it } from "vitest";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, projectRoot, waitFor } from "../support/local-server.ts";
import { isRunning as alive } from "../support/pids.ts";

const bin = join(projectRoot, "agent/bin/outpost-agent.mjs");
const groups: number[] = [];
const dirs: string[] = [];

afterEach(() => {
  for (const g of groups.splice(0)) {
    try { process.kill(-g, "SIGKILL"); } catch { /* gone */ }
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

// A registered-looking home whose server does not answer: the worker keeps retrying.
async function makeHome(): Promise<string> {
  const home = mkdtempSync(join(tmpdir(), "outpost-agent-home-"));
  dirs.push(home);
  const port = await freePort();
  writeFileSync(join(home, "settings.json"), JSON.stringify({ server: `http://127.0.0.1:${port}`, name: "m1", agentId: "a1", insecure: false, maxConcurrentDeployments: 4 }), { mode: 0o600 });
  writeFileSync(join(home, "credential.json"), JSON.stringify({ credential: "c" }), { mode: 0o600 });
  return home;
}

function startMonitor(home: string): { child: ChildProcess; exited: Promise<number | null>; output: () => string } {
  let out = "";
  const child = spawn(process.execPath, [bin, "run", "--home", home], { detached: true, stdio: ["ignore", "pipe", "pipe"] });
  groups.push(child.pid!);
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  return { child, exited, output: () => out };
}

const pidIn = (file: string): number | null => {
  try { return Number(readFileSync(file, "utf8").trim()) || null; } catch { return null; }
};

describe("monitor", () => {
  it("restarts a worker killed with SIGKILL, then stops everything on SIGTERM", async () => {
    const home = await makeHome();
    const m = startMonitor(home);
    const worker1 = await waitFor(async () => pidIn(join(home, "worker.pid")), 20_000, "worker.pid");
    expect(pidIn(join(home, "monitor.pid"))).toBe(m.child.pid);
    expect(worker1).not.toBe(m.child.pid);
    expect(alive(worker1)).toBe(true);

    process.kill(worker1, "SIGKILL");
    const worker2 = await waitFor(async () => { const p = pidIn(join(home, "worker.pid")); return p !== null && p !== worker1 ? p : null; }, 20_000, "a new worker.pid");
    expect(alive(worker2)).toBe(true);
    expect(alive(worker1)).toBe(false);
    expect(m.output()).toMatch(/worker \d+ exited \(SIGKILL\)/);

    process.kill(m.child.pid!, "SIGTERM");
    expect(await m.exited).toBe(0);
    expect(alive(worker2)).toBe(false);
    expect(existsSync(join(home, "worker.pid"))).toBe(false);
    expect(existsSync(join(home, "monitor.pid"))).toBe(false);
  });

  it("its worker exits on its own when the monitor is killed with SIGKILL", async () => {
    const home = await makeHome();
    const m = startMonitor(home);
    const worker = await waitFor(async () => pidIn(join(home, "worker.pid")), 20_000, "worker.pid");
    process.kill(m.child.pid!, "SIGKILL");
    await m.exited;
    await waitFor(async () => !alive(worker), 10_000, `worker ${worker} to exit after its monitor died`);
    expect(existsSync(join(home, "worker.pid"))).toBe(false); // the worker removed its own pid file
  });

  it("refuses a second monitor for the same home", async () => {
    const home = await makeHome();
    const m1 = startMonitor(home);
    await waitFor(async () => pidIn(join(home, "worker.pid")), 20_000, "worker.pid");
    const second = spawnSync(process.execPath, [bin, "run", "--home", home], { encoding: "utf8", timeout: 20_000 });
    expect(second.status).toBe(1);
    expect(second.stderr).toMatch(/another monitor \(pid \d+\) is running/);
    process.kill(m1.child.pid!, "SIGTERM");
    expect(await m1.exited).toBe(0);
  });
});

describe("command line", () => {
  it("prints usage and exits 2 on bad arguments", () => {
    for (const args of [[], ["run"], ["bogus"], ["run", "--home", "/tmp/x", "--concurrency", "zero"]]) {
      const r = spawnSync(process.execPath, [bin, ...args], { encoding: "utf8" });
      expect(r.status, args.join(" ")).toBe(2);
      expect(r.stderr).toMatch(/usage:/);
    }
  });

  it("refuses plain http to a non-loopback server unless --insecure", () => {
    const home = mkdtempSync(join(tmpdir(), "outpost-agent-home-"));
    dirs.push(home);
    const r = spawnSync(process.execPath, [bin, "register", "--server", "http://outpost.example.com", "--token", "t", "--name", "a", "--home", home], { encoding: "utf8" });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/refusing plain http:\/\/ to outpost.example.com/);
    expect(existsSync(join(home, "settings.json"))).toBe(false);
  });

  it("says so when the server cannot be reached, and writes nothing", async () => {
    const home = mkdtempSync(join(tmpdir(), "outpost-agent-home-"));
    dirs.push(home);
    const port = await freePort();
    const r = spawnSync(process.execPath, [bin, "register", "--server", `http://127.0.0.1:${port}`, "--token", "t", "--name", "a", "--home", home], { encoding: "utf8" });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/cannot reach http:\/\/127\.0\.0\.1/);
    expect(existsSync(join(home, "credential.json"))).toBe(false);
  });

  it("refuses to run an unregistered home", () => {
    const home = mkdtempSync(join(tmpdir(), "outpost-agent-home-"));
    dirs.push(home);
    const r = spawnSync(process.execPath, [bin, "run", "--home", home], { encoding: "utf8", timeout: 20_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/settings not found/);
  });
});


