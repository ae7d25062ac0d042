// readPluginPackage: what it accepts (packages made by plain `tar czf`) and every rule
// by which it refuses a package.
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { PLUGIN_LIMITS } from "./plugin.ts";
import { PluginPackageError, readPluginPackage, sha256Hex } from "./plugin-package.ts";
import { writeTar, type TarWriteEntry } from "./tar.ts";

const enc = new TextEncoder();
const manifest = {
  id: "greeter",
  version: "1.2.3",
  name: "Greeter",
  steps: [{ name: "greet", run: ["./greet.sh"], inputs: [{ name: "who" }] }],
};
const manifestFile = (m: unknown = manifest): TarWriteEntry => ({ path: "outpost-plugin.json", type: "file", mode: 0o644, data: enc.encode(JSON.stringify(m)) });
const script: TarWriteEntry = { path: "greet.sh", type: "file", mode: 0o755, data: enc.encode("#!/bin/sh\necho hi\n") };
const pack = (entries: TarWriteEntry[]) => new Uint8Array(gzipSync(writeTar(entries)));

function pluginDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "plugin-pkg-"));
  writeFileSync(join(dir, "outpost-plugin.json"), JSON.stringify(manifest));
  writeFileSync(join(dir, "greet.sh"), "#!/bin/sh\necho hi\n");
  chmodSync(join(dir, "greet.sh"), 0o755);
  mkdirSync(join(dir, "lib"));
  writeFileSync(join(dir, "lib", "common.sh"), "x=1\n");
  return dir;
}

async function refused(bytes: Uint8Array, message: string | RegExp): Promise<void> {
  const err = await readPluginPackage(bytes).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PluginPackageError);
  expect((err as Error).message).toMatch(message);
}

describe("readPluginPackage accepts", () => {
  it("`tar czf pkg.tgz -C dir .`: './' prefixes normalised, the root entry dropped, manifest defaults applied", async () => {
    const dir = pluginDir();
    const pkg = await readPluginPackage(new Uint8Array(execFileSync("tar", ["czf", "-", "-C", dir, "."])));
    expect(pkg.entries.map((e) => e.path).sort()).toEqual(["greet.sh", "lib", "lib/common.sh", "outpost-plugin.json"]);
    expect(pkg.entries.find((e) => e.path === "greet.sh")).toMatchObject({ type: "file", mode: 0o755, data: enc.encode("#!/bin/sh\necho hi\n") });
    expect(pkg.entries.find((e) => e.path === "lib")?.type).toBe("directory");
    expect(pkg.manifest).toEqual({
      ...manifest,
      description: "",
      steps: [{ name: "greet", run: ["./greet.sh"], outputs: [], inputs: [{ name: "who", type: "string", required: false, secret: false }] }],
    });
  });

  it("`tar czf pkg.tgz -C dir outpost-plugin.json greet.sh`", async () => {
    const pkg = await readPluginPackage(new Uint8Array(execFileSync("tar", ["czf", "-", "-C", pluginDir(), "outpost-plugin.json", "greet.sh"])));
    expect(pkg.entries.map((e) => e.path)).toEqual(["outpost-plugin.json", "greet.sh"]);
  });

  it("long names (GNU and pax), links inside the package, and hardlinks as copies", async () => {
    const dir = pluginDir();
    const deep = join("a".repeat(80), "b".repeat(80));
    mkdirSync(join(dir, deep), { recursive: true });
    writeFileSync(join(dir, deep, "data.txt"), "deep");
    symlinkSync("../greet.sh", join(dir, "lib", "greet-link"));
    symlinkSync(".", join(dir, "lib", "self"));
    execFileSync("ln", [join(dir, "greet.sh"), join(dir, "zz-copy.sh")]);
    for (const format of ["gnu", "pax"]) {
      const pkg = await readPluginPackage(new Uint8Array(execFileSync("tar", [`--format=${format}`, "--sort=name", "-czf", "-", "-C", dir, "."])));
      const byPath = new Map(pkg.entries.map((e) => [e.path, e]));
      expect(byPath.get(`${deep}/data.txt`)?.data).toEqual(enc.encode("deep"));
      expect(byPath.get("lib/greet-link")).toMatchObject({ type: "symlink", linkTarget: "../greet.sh" });
      expect(byPath.get("zz-copy.sh")).toMatchObject({ type: "file", mode: 0o755, data: enc.encode("#!/bin/sh\necho hi\n") });
    }
  });

  it("a run path that is a link to a file of the package; bare and absolute programs are not checked", async () => {
    const m = { ...manifest, steps: [{ name: "a", run: ["bin/greet"] }, { name: "b", run: ["sh", "-c", "true"] }, { name: "c", run: ["/bin/true"] }] };
    const pkg = await readPluginPackage(pack([manifestFile(m), script, { path: "bin", type: "directory", mode: 0o755 }, { path: "bin/greet", type: "symlink", mode: 0o777, linkTarget: "../greet.sh" }]));
    expect(pkg.manifest.steps.map((s) => s.run[0])).toEqual(["bin/greet", "sh", "/bin/true"]);
  });

  it("sha256Hex is the hex SHA-256 of the bytes", async () => {
    expect(await sha256Hex(enc.encode("abc"))).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  });
});

describe("readPluginPackage refuses", () => {
  it("an entry escaping the root with '..'", async () => {
    await refused(pack([manifestFile(), script, { path: "../x", type: "file", mode: 0o644 }]), "entry '../x' escapes the package root");
    await refused(pack([manifestFile(), script, { path: "./a/../../x", type: "file", mode: 0o644 }]), "escapes the package root");
    await refused(pack([manifestFile(), script, { path: "a/../x", type: "file", mode: 0o644 }]), "entry 'a/../x' contains '..'");
  });

  it("an absolute path", async () => {
    await refused(pack([manifestFile(), script, { path: "/etc/cron.d/x", type: "file", mode: 0o644 }]), "entry '/etc/cron.d/x' escapes the package root");
  });

  it("a symlink pointing out of the root, directly, absolutely or through another link", async () => {
    await refused(pack([manifestFile(), script, { path: "lib/out", type: "symlink", mode: 0o777, linkTarget: "../../etc" }]), "symlink 'lib/out' points out of the package root ('../../etc')");
    await refused(pack([manifestFile(), script, { path: "abs", type: "symlink", mode: 0o777, linkTarget: "/etc/passwd" }]), "symlink 'abs' points out");
    const chain: TarWriteEntry[] = [
      { path: "d", type: "directory", mode: 0o755 },
      { path: "d/up", type: "symlink", mode: 0o777, linkTarget: ".." }, // the root: fine by itself
      { path: "escape", type: "symlink", mode: 0o777, linkTarget: "d/up/.." }, // lexically d/, really above the root
    ];
    await refused(pack([manifestFile(), script, ...chain]), "symlink 'escape' points out of the package root ('d/up/..') through another link");
    await refused(pack([manifestFile(), script, { path: "a", type: "symlink", mode: 0o777, linkTarget: "b" }, { path: "b", type: "symlink", mode: 0o777, linkTarget: "a" }]), /loop of links/);
  });

  it("an entry written through a symlink (or under a file)", async () => {
    await refused(pack([manifestFile(), script, { path: "lib", type: "symlink", mode: 0o777, linkTarget: "." }, { path: "lib/x", type: "file", mode: 0o644 }]), "entry 'lib/x' is inside 'lib', which is a symlink");
    await refused(pack([manifestFile(), script, { path: "greet.sh/x", type: "file", mode: 0o644 }]), "which is a file");
  });

  it("a hardlink pointing out of the root, or to no earlier file", async () => {
    await refused(pack([manifestFile(), script, { path: "h", type: "hardlink", mode: 0o644, linkTarget: "../../etc/shadow" }]), "hardlink 'h' points out of the package root ('../../etc/shadow')");
    await refused(pack([manifestFile(), script, { path: "h", type: "hardlink", mode: 0o644, linkTarget: "/etc/shadow" }]), "hardlink 'h' points out of the package root");
    await refused(pack([manifestFile(), { path: "h", type: "hardlink", mode: 0o644, linkTarget: "greet.sh" }, script]), "not a file earlier in the package");
  });

  it("devices and fifos", async () => {
    const dir = pluginDir();
    execFileSync("mkfifo", [join(dir, "pipe")]);
    await refused(new Uint8Array(execFileSync("tar", ["czf", "-", "-C", dir, "."])), "entry 'pipe' is a fifo");
    await refused(new Uint8Array(execFileSync("tar", ["czf", "-", "-C", "/dev", "null"])), "entry 'null' is a char-device");
  });

  it("a file (or link) named as the root itself", async () => {
    await refused(pack([manifestFile(), script, { path: ".", type: "file", mode: 0o644 }]), "entry '.' has no name");
    await refused(pack([manifestFile(), script, { path: "./", type: "symlink", mode: 0o777, linkTarget: "/" }]), "entry './' has no name");
  });

  it("the same path twice", async () => {
    await refused(pack([manifestFile(), script, { ...script, path: "./greet.sh" }]), "entry 'greet.sh' appears twice");
  });

  it("no manifest, or a manifest that is not a file", async () => {
    await refused(pack([script]), "no outpost-plugin.json at the package root");
    await refused(pack([{ ...manifestFile(), path: "sub/outpost-plugin.json" }, script]), "no outpost-plugin.json at the package root");
    await refused(pack([{ path: "outpost-plugin.json", type: "directory", mode: 0o755 }, script]), "outpost-plugin.json is a directory");
  });

  it("an invalid manifest", async () => {
    await refused(pack([{ ...manifestFile(), data: enc.encode("{ nope") }, script]), /^outpost-plugin.json is not valid UTF-8 JSON/);
    await refused(pack([manifestFile({ ...manifest, steps: [{ name: "greet", run: [] }] }), script]), /^outpost-plugin.json: steps\.0\.run: /);
    await refused(pack([manifestFile({ ...manifest, version: "1.0" }), script]), /^outpost-plugin.json: version: a version is semver/);
    await refused(pack([manifestFile({ ...manifest, extra: true }), script]), /^outpost-plugin.json: .*extra/);
  });

  it("a run path naming no file of the package", async () => {
    await refused(pack([manifestFile()]), "outpost-plugin.json: steps.0.run.0: './greet.sh' is not a file of the package");
    await refused(pack([manifestFile({ ...manifest, steps: [{ name: "x", run: ["lib"] }, { name: "y", run: ["./lib"] }] }), { path: "lib", type: "directory", mode: 0o755 }]), "steps.1.run.0: './lib' is not a file");
    await refused(pack([manifestFile({ ...manifest, steps: [{ name: "x", run: ["../greet.sh"] }] }), script]), "steps.0.run.0: program '../greet.sh' escapes the package root");
  });

  it("bytes that are not gzip", async () => {
    await refused(enc.encode("PK\x03\x04 a zip file, say, or anything else at all"), "the package is not a gzip file");
    await refused(writeTar([manifestFile(), script]), "the package is not a gzip file"); // an uncompressed tar
  });

  it("gzip data that is corrupt or truncated", async () => {
    const good = pack([manifestFile(), script]);
    await refused(good.subarray(0, good.length - 10), /not valid gzip data|not a valid tar/);
    const corrupt = good.slice();
    corrupt[good.length - 6] ^= 0xff; // the CRC/length trailer
    await refused(corrupt, /not valid gzip data/);
  });

  it("gzip of something that is not a tar", async () => {
    await refused(new Uint8Array(gzipSync("just some text, not a tar archive\n".repeat(50))), /^not a valid tar archive inside the gzip: header checksum/);
  });

  it("more entries than the limit", async () => {
    const many: TarWriteEntry[] = Array.from({ length: PLUGIN_LIMITS.entries }, (_, i) => ({ path: `f${i}`, type: "file", mode: 0o644 }));
    await refused(pack([manifestFile(), script, ...many]), `the package has more than ${PLUGIN_LIMITS.entries} entries`);
    await expect(readPluginPackage(pack([manifestFile(), script, ...many.slice(2)]))).resolves.toBeTruthy();
  });

  it("a gzip bomb of zeros: by its size trailer, or as soon as it inflates past a lying one", async () => {
    const bomb = new Uint8Array(gzipSync(Buffer.alloc(PLUGIN_LIMITS.unpackedBytes + 8 * 1024 * 1024), { level: 9 }));
    expect(bomb.length).toBeLessThan(PLUGIN_LIMITS.packageBytes);
    await refused(bomb, `the package unpacks to more than ${PLUGIN_LIMITS.unpackedBytes} bytes`);
    const lying = bomb.slice();
    new DataView(lying.buffer).setUint32(lying.length - 4, 1024 * 1024, true); // claims 1 MiB
    await refused(lying, /unpacks to more than its trailer says/);
  });

  it("concatenated gzip streams", async () => {
    const tar = writeTar([manifestFile(), script]);
    const half = tar.length / 2;
    const two = new Uint8Array([...gzipSync(tar.subarray(0, half)), ...gzipSync(tar.subarray(half))]);
    await refused(two, /not valid gzip data/);
  });

  it("files adding up to more than the limit (hardlink copies count)", async () => {
    const mib = { path: "big", type: "file" as const, mode: 0o644, data: new Uint8Array(1024 * 1024) };
    const links: TarWriteEntry[] = Array.from({ length: 64 }, (_, i) => ({ path: `copy${i}`, type: "hardlink", mode: 0o644, linkTarget: "big" }));
    await refused(pack([manifestFile(), script, mib, ...links]), `the package unpacks to more than ${PLUGIN_LIMITS.unpackedBytes} bytes`);
  });

  it("a manifest larger than the limit", async () => {
    const padded = enc.encode(JSON.stringify(manifest) + " ".repeat(PLUGIN_LIMITS.manifestBytes));
    await refused(pack([{ ...manifestFile(), data: padded }, script]), `outpost-plugin.json is larger than ${PLUGIN_LIMITS.manifestBytes} bytes`);
  });

  it("a package larger than the upload limit", async () => {
    await refused(new Uint8Array(PLUGIN_LIMITS.packageBytes + 1), `the package is larger than ${PLUGIN_LIMITS.packageBytes} bytes`);
  });
});
