// Writing package entries into a folder (second line of defence) and checking it later.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PackageEntry } from "../../schema/plugin-package.ts";
import { checkPackageFolder, LISTING_FILE, PackageFolderError, writePackageFolder } from "./package-folder.ts";

const SHA = "b".repeat(64);
const pkg = { id: "greeter", version: "1.0.0", sha256: SHA };
const text = (s: string) => new TextEncoder().encode(s);
const file = (path: string, content: string, mode = 0o644): PackageEntry => ({ path, type: "file", mode, data: text(content) });
const dir = (path: string): PackageEntry => ({ path, type: "directory", mode: 0o755 });
const link = (path: string, linkTarget: string): PackageEntry => ({ path, type: "symlink", mode: 0o777, linkTarget });

let base: string;
let folder: string;
beforeEach(() => {
  base = mkdtempSync(join(tmpdir(), "outpost-pkgdir-"));
  folder = join(base, "pkg");
  mkdirSync(folder, { mode: 0o700 });
});
afterEach(() => rmSync(base, { recursive: true, force: true }));

const good = (): PackageEntry[] => [
  file("outpost-plugin.json", "{}"),
  file("greet.sh", "echo hi\n", 0o664),
  file("lib/deep/x.mjs", "export {}", 0o775), // its folders are not listed: made 0700
  dir("bin"),
  file("bin/tool", "#!/bin/sh\n", 0o755),
  link("hello", "greet.sh"),
  link("bin/up", "../lib"),
];
const mode = (p: string) => lstatSync(join(folder, p)).mode & 0o777;

describe("writePackageFolder", () => {
  it("writes every entry with private modes, keeping only the owner's execute bit, and a listing", async () => {
    await writePackageFolder(folder, good(), pkg);
    expect(readFileSync(join(folder, "greet.sh"), "utf8")).toBe("echo hi\n");
    expect(readFileSync(join(folder, "lib/deep/x.mjs"), "utf8")).toBe("export {}");
    expect(readlinkSync(join(folder, "hello"))).toBe("greet.sh");
    expect(readFileSync(join(folder, "bin/up/deep/x.mjs"), "utf8")).toBe("export {}");
    expect([mode("greet.sh"), mode("outpost-plugin.json"), mode("bin/tool"), mode("lib/deep/x.mjs")]).toEqual([0o600, 0o600, 0o700, 0o700]);
    expect([mode("bin"), mode("lib"), mode("lib/deep"), mode(LISTING_FILE)]).toEqual([0o700, 0o700, 0o700, 0o600]);
    const listing = JSON.parse(readFileSync(join(folder, LISTING_FILE), "utf8"));
    expect(listing.sha256).toBe(SHA);
    expect(listing.entries).toHaveLength(7);
    expect(await checkPackageFolder(folder, SHA)).toBe(null);
  });

  const refused: [string, PackageEntry[], RegExp][] = [
    ["a '..' path", [file("a/../../x", "")], /not a plain relative path/],
    ["an absolute path", [file("/tmp/x", "")], /not a plain relative path/],
    ["the listing's name", [file(LISTING_FILE, "{}")], /the agent's own file/],
    ["a path given twice", [file("a", "1"), file("a", "2")], /appears twice/],
    ["an entry under a symlink", [dir("d"), link("l", "d"), file("l/x", "")], /lies under 'l', a symlink/],
    ["an entry under a file", [file("f", ""), file("f/x", "")], /lies under 'f', a file/],
    ["an absolute symlink", [link("l", "/etc/passwd")], /is not a relative path/],
    ["a symlink climbing out", [dir("a"), link("a/l", "../../outside")], /leads out of the folder/],
    ["a symlink out through another link", [link("up", "."), link("a", "up/..")], /leads out of the folder \(to /],
  ];
  for (const [what, entries, message] of refused) {
    it(`refuses ${what}`, async () => {
      const e = await writePackageFolder(folder, entries, pkg).then(() => null, (err: unknown) => err);
      expect(e).toBeInstanceOf(PackageFolderError);
      expect((e as Error).message).toMatch(message);
      expect(existsSync(join(folder, LISTING_FILE))).toBe(false);
    });
  }

  it("refuses before writing anything when any entry is bad", async () => {
    await expect(writePackageFolder(folder, [file("ok.txt", "x"), link("evil", "../../../etc/passwd")], pkg)).rejects.toThrow(PackageFolderError);
    expect(readdirSync(folder)).toEqual([]);
  });
});

describe("checkPackageFolder", () => {
  beforeEach(async () => {
    await writePackageFolder(folder, good(), pkg);
  });

  it("ignores files the listing does not name", async () => {
    writeFileSync(join(folder, "lib/cache.bin"), "made at run time");
    expect(await checkPackageFolder(folder, SHA)).toBe(null);
  });

  const damage: [string, () => void, RegExp][] = [
    ["a file edited, same size", () => writeFileSync(join(folder, "greet.sh"), "echo HI\n"), /'greet.sh' has changed/],
    ["a file edited, other size", () => writeFileSync(join(folder, "greet.sh"), "echo hello\n"), /'greet.sh' has 11 bytes, 8 were written/],
    ["a file's mode changed", () => chmodSync(join(folder, "bin/tool"), 0o600), /'bin\/tool' has mode 600, 700 was written/],
    ["a file removed", () => unlinkSync(join(folder, "lib/deep/x.mjs")), /'lib\/deep\/x.mjs' is missing/],
    ["a folder removed", () => rmSync(join(folder, "bin"), { recursive: true }), /'bin' is missing/],
    ["a symlink retargeted", () => (unlinkSync(join(folder, "hello")), symlinkSync("outpost-plugin.json", join(folder, "hello"))), /symlink 'hello' points elsewhere/],
    ["a file replaced by a symlink", () => (unlinkSync(join(folder, "greet.sh")), symlinkSync("outpost-plugin.json", join(folder, "greet.sh"))), /'greet.sh' is no longer a regular file/],
    ["the listing removed", () => unlinkSync(join(folder, LISTING_FILE)), /is missing/],
    ["the listing garbled", () => writeFileSync(join(folder, LISTING_FILE), "{"), /is not valid JSON/],
    ["the listing replaced", () => writeFileSync(join(folder, LISTING_FILE), '{"entries":[]}'), /not a listing this agent wrote/],
  ];
  for (const [what, harm, message] of damage) {
    it(`finds ${what}`, async () => {
      harm();
      expect(await checkPackageFolder(folder, SHA)).toMatch(message);
    });
  }

  it("finds a listing of another package", async () => {
    expect(await checkPackageFolder(folder, "c".repeat(64))).toMatch(/is for package sha256 b{64}/);
  });
});
