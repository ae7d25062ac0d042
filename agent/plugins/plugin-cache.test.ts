// The plug-in cache with real packages made by the system's `tar czf`.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Logger } from "../log.ts";
import { LISTING_FILE } from "./package-folder.ts";
import { PluginCache, PluginFetchError } from "./plugin-cache.ts";

let base: string;
let cacheDir: string;
beforeEach(() => {
  base = mkdtempSync(join(tmpdir(), "outpost-plugin-cache-"));
  cacheDir = join(base, "home", "plugins");
});
afterEach(() => rmSync(base, { recursive: true, force: true }));

type Content = string | { data: string; mode: number } | { link: string };
let packages = 0;

// A .tar.gz of these files, with a manifest for id@version unless the files give one.
function makePackage(files: Record<string, Content>, id = "greeter", version = "1.0.0"): { bytes: Uint8Array; sha256: string } {
  const src = join(base, `src-${++packages}`);
  mkdirSync(src);
  const all: Record<string, Content> = {
    "outpost-plugin.json": JSON.stringify({ id, version, name: "Greeter", steps: [{ name: "greet", run: ["sh", "greet.sh"] }] }),
    ...files,
  };
  for (const [path, c] of Object.entries(all)) {
    const full = join(src, path);
    mkdirSync(join(full, ".."), { recursive: true });
    if (typeof c === "string") writeFileSync(full, c);
    else if ("link" in c) symlinkSync(c.link, full);
    else {
      writeFileSync(full, c.data);
      chmodSync(full, c.mode);
    }
  }
  const out = join(base, `pkg-${packages}.tar.gz`);
  execFileSync("tar", ["czf", out, "-C", src, "."]);
  const bytes = new Uint8Array(readFileSync(out));
  return { bytes, sha256: createHash("sha256").update(bytes).digest("hex") };
}

const GREETER = { "greet.sh": "echo hello\n", "bin/tool": { data: "#!/bin/sh\necho tool\n", mode: 0o755 }, hello: { link: "greet.sh" } };

// A fake server: serves the packages it holds, counts downloads, may be slowed down.
function fakeServer(pkgs: Record<string, Uint8Array>) {
  const calls: string[] = [];
  let delayMs = 0;
  const download = async (id: string, version: string): Promise<Uint8Array> => {
    calls.push(`${id}@${version}`);
    if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
    const bytes = pkgs[`${id}@${version}`];
    if (!bytes) throw new Error(`HTTP 404 for ${id}@${version}`);
    return bytes;
  };
  return { calls, download, slow: (ms: number) => (delayMs = ms) };
}

function fakeLog() {
  const lines: string[] = [];
  const log: Logger = {
    info: (m) => lines.push(`INFO ${m}`),
    debug: () => undefined,
    warn: (m) => lines.push(`WARN ${m}`),
    error: (m) => lines.push(`ERROR ${m}`),
    child: () => log,
  };
  return { log, lines };
}

function setup(files: Record<string, Content> = GREETER) {
  const pkg = makePackage(files);
  const server = fakeServer({ "greeter@1.0.0": pkg.bytes });
  const { log, lines } = fakeLog();
  const cache = new PluginCache({ dir: cacheDir, download: server.download, log });
  return { pkg, server, cache, lines, ref: { id: "greeter", version: "1.0.0", sha256: pkg.sha256 } };
}

const mode = (p: string) => lstatSync(p).mode & 0o777;

describe("PluginCache.ensure", () => {
  it("downloads, checks and unpacks a package it lacks into <dir>/<id>/<version>-<sha16>, privately", async () => {
    const { server, cache, ref, lines } = setup();
    const folder = await cache.ensure(ref);
    expect(folder).toBe(join(cacheDir, "greeter", `1.0.0-${ref.sha256.slice(0, 16)}`));
    expect(cache.folderOf(ref)).toBe(folder);
    expect(server.calls).toEqual(["greeter@1.0.0"]);
    expect(readFileSync(join(folder, "greet.sh"), "utf8")).toBe("echo hello\n");
    expect(readlinkSync(join(folder, "hello"))).toBe("greet.sh");
    expect([mode(folder), mode(join(folder, "bin")), mode(join(folder, "greet.sh")), mode(join(folder, "bin/tool"))]).toEqual([0o700, 0o700, 0o600, 0o700]);
    expect(execFileSync(join(folder, "bin/tool"), { encoding: "utf8" })).toBe("tool\n");
    expect(existsSync(join(folder, LISTING_FILE))).toBe(true);
    expect(readdirSync(join(cacheDir, "greeter"))).toEqual([`1.0.0-${ref.sha256.slice(0, 16)}`]); // no temporary folder left
    expect(lines.some((l) => l.startsWith("INFO plug-in greeter@1.0.0") && l.includes("unpacked into"))).toBe(true);
  });

  it("does not download again a package it holds intact, even after a restart", async () => {
    const { server, cache, ref } = setup();
    const folder = await cache.ensure(ref);
    expect(await cache.ensure(ref)).toBe(folder);
    const restarted = new PluginCache({ dir: cacheDir, download: server.download, log: fakeLog().log });
    expect(await restarted.ensure(ref)).toBe(folder);
    expect(server.calls).toHaveLength(1);
  });

  it("refuses a package whose sha256 is not the command's, and keeps nothing", async () => {
    const { server, cache, ref, pkg } = setup();
    const wrong = "0".repeat(64);
    const e = await cache.ensure({ ...ref, sha256: wrong }).then(() => null, (err: unknown) => err);
    expect(e).toBeInstanceOf(PluginFetchError);
    expect((e as Error).message).toBe(`plug-in greeter@1.0.0: the downloaded package has sha256 ${pkg.sha256}, the command expects ${wrong}; not kept`);
    expect(server.calls).toHaveLength(1);
    expect(existsSync(cacheDir) ? readdirSync(cacheDir, { recursive: true }) : []).toEqual([]);
  });

  it("fetches again a copy with an edited file, a removed file or no listing", async () => {
    const { server, cache, ref, lines } = setup();
    const folder = await cache.ensure(ref);
    const harms = [
      () => writeFileSync(join(folder, "greet.sh"), "echo HELLO\n"), // same size: only its sha256 tells
      () => unlinkSync(join(folder, "bin/tool")),
      () => unlinkSync(join(folder, LISTING_FILE)),
    ];
    for (const [i, harm] of harms.entries()) {
      harm();
      expect(await cache.ensure(ref)).toBe(folder);
      expect(server.calls).toHaveLength(2 + i);
      expect(readFileSync(join(folder, "greet.sh"), "utf8")).toBe("echo hello\n");
      expect(readFileSync(join(folder, "bin/tool"), "utf8")).toBe("#!/bin/sh\necho tool\n");
    }
    expect(lines.filter((l) => l.startsWith("WARN") && l.includes("is damaged"))).toHaveLength(3);
    expect(lines.some((l) => l.includes("('greet.sh' has changed (sha256 differs))"))).toBe(true);
  });

  it("shares one download between concurrent ensures of the same package", async () => {
    const { server, cache, ref } = setup();
    server.slow(100);
    const [a, b, c] = await Promise.all([cache.ensure(ref), cache.ensure(ref), cache.ensure({ ...ref })]);
    expect(a).toBe(b);
    expect(b).toBe(c);
    expect(server.calls).toHaveLength(1);
    expect(readFileSync(join(a, "greet.sh"), "utf8")).toBe("echo hello\n");
  });

  it("refuses a package with a symlink pointing out of it, and keeps nothing", async () => {
    const { cache, ref } = setup({ ...GREETER, evil: { link: "../../../../etc/passwd" } });
    const e = await cache.ensure(ref).then(() => null, (err: unknown) => err);
    expect(e).toBeInstanceOf(PluginFetchError);
    expect((e as Error).message).toMatch(/^plug-in greeter@1\.0\.0: the package cannot be unpacked: symlink 'evil' points out of the package root/);
    expect(existsSync(cache.folderOf(ref))).toBe(false);
    expect(existsSync(join(cacheDir, "greeter"))).toBe(false);
  });

  it("refuses a package whose manifest names another plug-in or version", async () => {
    const other = makePackage(GREETER, "greeter", "2.0.0");
    const server = fakeServer({ "greeter@1.0.0": other.bytes });
    const cache = new PluginCache({ dir: cacheDir, download: server.download, log: fakeLog().log });
    await expect(cache.ensure({ id: "greeter", version: "1.0.0", sha256: other.sha256 })).rejects.toThrow("plug-in greeter@1.0.0: the package's manifest is greeter@2.0.0");
  });

  it("wraps a failed download, and tries again on the next ensure", async () => {
    const pkg = makePackage(GREETER);
    const held: Record<string, Uint8Array> = {};
    const server = fakeServer(held);
    const cache = new PluginCache({ dir: cacheDir, download: server.download, log: fakeLog().log });
    const ref = { id: "greeter", version: "1.0.0", sha256: pkg.sha256 };
    const e = await cache.ensure(ref).then(() => null, (err: unknown) => err);
    expect(e).toBeInstanceOf(PluginFetchError);
    expect((e as Error).message).toBe("plug-in greeter@1.0.0: cannot download the package: HTTP 404 for greeter@1.0.0");
    expect((e as PluginFetchError).cause).toBeInstanceOf(Error);
    held["greeter@1.0.0"] = pkg.bytes;
    expect(readFileSync(join(await cache.ensure(ref), "greet.sh"), "utf8")).toBe("echo hello\n");
    expect(server.calls).toHaveLength(2);
  });

  it("removes a temporary folder left by an interrupted unpack", async () => {
    const { cache, ref, lines } = setup();
    const leftover = join(cacheDir, "greeter", `.tmp-1.0.0-${ref.sha256.slice(0, 16)}-999-1`);
    mkdirSync(join(leftover, "bin"), { recursive: true });
    const folder = await cache.ensure(ref);
    expect(readdirSync(join(cacheDir, "greeter"))).toEqual([folder.split("/").pop()]);
    expect(lines.some((l) => l.startsWith("WARN removing .tmp-1.0.0-"))).toBe(true);
  });

  it("refuses a reference that cannot name a folder", async () => {
    const { cache, ref, server } = setup();
    for (const bad of [{ ...ref, id: "../x" }, { ...ref, version: "1.0/../../x" }, { ...ref, sha256: "ABC" }]) {
      await expect(cache.ensure(bad)).rejects.toThrow(PluginFetchError);
    }
    expect(server.calls).toEqual([]);
  });
});
