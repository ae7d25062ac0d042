import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadMonitor, MonitorHandoverError, monitorModuleOf } from "./handover.ts";

const root = mkdtempSync(join(tmpdir(), "outpost-handover-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function unpacked(name: string, monitor: string | null): string {
  const dir = join(root, name);
  mkdirSync(join(dir, "lib"), { recursive: true });
  writeFileSync(join(dir, "lib/worker.mjs"), "");
  if (monitor !== null) writeFileSync(join(dir, "lib/monitor.mjs"), monitor);
  return join(dir, "lib/worker.mjs");
}

describe("monitorModuleOf", () => {
  it("finds the monitor beside a packaged worker", () => {
    const worker = unpacked("with", "");
    expect(monitorModuleOf(worker)).toBe(join(root, "with/lib/monitor.mjs"));
  });
  it("is null for a package built before monitors were handed over, and for a worker run from source", () => {
    expect(monitorModuleOf(unpacked("without", null))).toBeNull();
    expect(monitorModuleOf("/src/outpost/agent/worker/main.ts")).toBeNull();
  });
});

describe("loadMonitor", () => {
  it("loads a monitor that accepts this contract", async () => {
    const worker = unpacked("good", "export const MONITOR_HANDOVER_CONTRACTS = [1, 2];\nexport async function runMonitor() { return 7; }\n");
    const run = await loadMonitor(monitorModuleOf(worker)!);
    expect(await run({ home: "/h", concurrency: null, retentionDays: null, stepUmask: 0o22 })).toBe(7);
  });
  it("refuses one that does not accept this contract, exports no runMonitor, or does not load", async () => {
    const cases: [string, string, RegExp][] = [
      ["newer", "export const MONITOR_HANDOVER_CONTRACTS = [2];\nexport async function runMonitor() {}\n", /does not accept hand-over contract 1/],
      ["nofn", "export const MONITOR_HANDOVER_CONTRACTS = [1];\n", /exports no runMonitor/],
      ["broken", "export const = ;\n", /cannot load the monitor/],
    ];
    for (const [name, text, message] of cases) {
      const module = monitorModuleOf(unpacked(name, text))!;
      const e = await loadMonitor(module).then(() => null, (err: unknown) => err);
      expect(e, name).toBeInstanceOf(MonitorHandoverError);
      expect((e as Error).message).toMatch(message);
      expect((e as MonitorHandoverError).context.module).toBe(module);
    }
  });
});
