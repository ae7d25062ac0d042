import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { EXIT_RESTART, EXIT_UPGRADE } from "../errors.ts";
import type { Logger } from "../log.ts";
import { HEALTHY_MESSAGE, ROLLED_BACK_ENV, UPGRADE_TO_ENV } from "../upgrade-protocol.ts";
import { WorkerVersions } from "./worker-versions.ts";

const quiet: Logger = { info: () => {}, debug: () => {}, warn: () => {}, error: () => {}, child: () => quiet };
const homes: string[] = [];
afterEach(() => {
  for (const h of homes.splice(0)) rmSync(h, { recursive: true, force: true });
});

function setUp(): { home: string; versions: WorkerVersions; next: string } {
  const home = mkdtempSync(join(tmpdir(), "outpost-versions-"));
  homes.push(home);
  const next = join(home, "versions/2.0.0/lib/worker.mjs");
  const versions = new WorkerVersions(home, "/src/agent/worker/main.ts", quiet, { OUTPOST_UPGRADE_HEALTH_MS: "60000" });
  versions.message({ type: "upgrade", version: "2.0.0", dir: join(home, "versions/2.0.0"), worker: next });
  expect(versions.exited(EXIT_UPGRADE, null)).toEqual({ env: { [UPGRADE_TO_ENV]: "2.0.0" } });
  expect(versions.entry()).toBe(next);
  return { home, versions, next };
}

describe("WorkerVersions", () => {
  it("a healthy trial worker makes its version the one this and the next monitor run", () => {
    const { home, versions, next } = setUp();
    expect(versions.message(HEALTHY_MESSAGE)).toBe(true);
    expect(versions.current).toEqual({ version: "2.0.0", worker: next });
    expect(JSON.parse(readFileSync(join(home, "agent-version.json"), "utf8"))).toEqual({ version: "2.0.0", worker: next });
    expect(versions.message(HEALTHY_MESSAGE)).toBe(false); // no trial any more
  });

  it("a trial worker that exits before it is healthy rolls back, saying why", () => {
    const { versions } = setUp();
    const back = versions.exited(3, null);
    expect(JSON.parse(back!.env[ROLLED_BACK_ENV]!)).toEqual({ version: "2.0.0", reason: "the new worker exited (code 3) before it was healthy" });
    expect(versions.entry()).toBe("/src/agent/worker/main.ts");
  });

  it("a restart the server asks for during the trial restarts the same version, still on trial", () => {
    const { versions, next } = setUp();
    expect(versions.exited(EXIT_RESTART, null)).toEqual({ env: { [UPGRADE_TO_ENV]: "2.0.0" } });
    expect(versions.entry()).toBe(next);
    expect(versions.message(HEALTHY_MESSAGE)).toBe(true);
  });

  it("an agent-version.json naming a worker that is gone is ignored", () => {
    const home = mkdtempSync(join(tmpdir(), "outpost-versions-"));
    homes.push(home);
    writeFileSync(join(home, "agent-version.json"), JSON.stringify({ version: "9.9.9", worker: join(home, "gone.mjs") }));
    expect(new WorkerVersions(home, "/src/w.ts", quiet).current).toEqual({ version: null, worker: "/src/w.ts" });
  });
});
