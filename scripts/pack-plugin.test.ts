// scripts/pack-plugin.ts: the same folder always packs to the same bytes, and what it
// packs is a package the server accepts.
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readPluginPackage } from "../schema/plugin-package.ts";
import { packAndCheck, PackError, packPluginDir } from "./pack-plugin.ts";

const manifest = { id: "packed", version: "0.1.0", name: "Packed", steps: [{ name: "run", run: ["./bin/run.sh"] }] };

function plugin(): string {
  const dir = mkdtempSync(join(tmpdir(), "pack-plugin-"));
  writeFileSync(join(dir, "outpost-plugin.json"), JSON.stringify(manifest));
  mkdirSync(join(dir, "bin"));
  writeFileSync(join(dir, "bin", "run.sh"), "#!/bin/sh\necho run\n");
  chmodSync(join(dir, "bin", "run.sh"), 0o755);
  writeFileSync(join(dir, "README.md"), "# packed\n");
  symlinkSync("bin/run.sh", join(dir, "run"));
  return dir;
}

describe("pack-plugin", () => {
  it("packs the same folder to the same bytes, whatever the times, umask-dependent modes or creation order", () => {
    const dir = plugin();
    const first = packPluginDir(dir);
    expect(packPluginDir(dir)).toEqual(first);

    utimesSync(join(dir, "README.md"), new Date(2001, 1, 1), new Date(2001, 1, 1));
    chmodSync(join(dir, "bin", "run.sh"), 0o700); // executable for its owner only: still 0755
    chmodSync(join(dir, "README.md"), 0o664);
    expect(packPluginDir(dir)).toEqual(first);

    // The same files created in another order, in another folder.
    const other = mkdtempSync(join(tmpdir(), "pack-plugin-"));
    symlinkSync("bin/run.sh", join(other, "run"));
    writeFileSync(join(other, "README.md"), "# packed\n");
    mkdirSync(join(other, "bin"));
    writeFileSync(join(other, "bin", "run.sh"), "#!/bin/sh\necho run\n");
    chmodSync(join(other, "bin", "run.sh"), 0o755);
    writeFileSync(join(other, "outpost-plugin.json"), JSON.stringify(manifest));
    expect(packPluginDir(other)).toEqual(first);

    writeFileSync(join(dir, "README.md"), "# changed\n");
    expect(packPluginDir(dir)).not.toEqual(first);
  });

  it("writes a gzip header without time or OS, and a tar that GNU tar lists in sorted order", () => {
    const bytes = packPluginDir(plugin());
    expect(Array.from(bytes.subarray(0, 10))).toEqual([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255]);
    const listing = execFileSync("tar", ["tzvf", "-", "--numeric-owner", "--full-time"], { input: bytes }).toString().trim().split("\n");
    expect(listing.map((l) => l.split(/\s+/).slice(5).join(" "))).toEqual(["README.md", "bin/", "bin/run.sh", "outpost-plugin.json", "run -> bin/run.sh"]);
    expect(listing[2]).toMatch(/^-rwxr-xr-x 0\/0 .* 1970-01-01 00:00:00 bin\/run\.sh$/);
  });

  it("gives a package readPluginPackage accepts", async () => {
    const pkg = await readPluginPackage(packPluginDir(plugin()));
    expect(pkg.manifest.id).toBe("packed");
    expect(pkg.entries.map((e) => [e.path, e.type, e.mode])).toEqual([
      ["README.md", "file", 0o644],
      ["bin", "directory", 0o755],
      ["bin/run.sh", "file", 0o755],
      ["outpost-plugin.json", "file", 0o644],
      ["run", "symlink", 0o777],
    ]);
  });

  it("refuses a folder the server would refuse, saying why", async () => {
    const dir = plugin();
    symlinkSync("../../etc/passwd", join(dir, "escape"));
    await expect(packAndCheck(dir)).rejects.toThrow(PackError);
    await expect(packAndCheck(dir)).rejects.toThrow(/symlink 'escape' points out of the package root/);
  });

  it("runs as `node scripts/pack-plugin.ts DIR OUT.tgz`", () => {
    const dir = plugin();
    const out = join(mkdtempSync(join(tmpdir(), "pack-out-")), "p.tgz");
    const ok = spawnSync(process.execPath, [join(import.meta.dirname, "pack-plugin.ts"), dir, out], { encoding: "utf8" });
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^packed packed 0\.1\.0 → .*p\.tgz \(\d+ bytes, sha256 [0-9a-f]{64}\)/);
    expect(new Uint8Array(readFileSync(out))).toEqual(packPluginDir(dir));

    writeFileSync(join(dir, "outpost-plugin.json"), "{}");
    const bad = spawnSync(process.execPath, [join(import.meta.dirname, "pack-plugin.ts"), dir, out], { encoding: "utf8" });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/pack-plugin: .*outpost-plugin\.json: /);
    const usage = spawnSync(process.execPath, [join(import.meta.dirname, "pack-plugin.ts"), dir], { encoding: "utf8" });
    expect(usage.status).toBe(2);
  });
});
