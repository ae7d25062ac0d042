// schema/tar.ts against archives GNU tar writes (gnu, pax and ustar formats) and
// archives GNU tar has to read back from our writer.
import { execFileSync } from "node:child_process";
import { chmodSync, linkSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readTar, TarError, writeTar, type TarEntry, type TarWriteEntry } from "./tar.ts";

const LONG_DIR = "d".repeat(60) + "/" + "e".repeat(60); // 121 bytes: over ustar's 100-byte name
const LONG_FILE = `${LONG_DIR}/${"f".repeat(90)}.txt`;
const LONG_TARGET = "../".repeat(2) + "t".repeat(120);

function fixtureDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "tar-test-"));
  writeFileSync(join(dir, "hello.txt"), "hello\n");
  writeFileSync(join(dir, "run.sh"), "#!/bin/sh\necho hi\n");
  chmodSync(join(dir, "run.sh"), 0o755);
  mkdirSync(join(dir, LONG_DIR), { recursive: true });
  writeFileSync(join(dir, LONG_FILE), "x".repeat(1500));
  symlinkSync("hello.txt", join(dir, "link"));
  symlinkSync(LONG_TARGET, join(dir, "longlink"));
  linkSync(join(dir, "hello.txt"), join(dir, "xhard.txt"));
  writeFileSync(join(dir, "été.txt"), "accents");
  return dir;
}

function systemTar(format: string, dir: string): Uint8Array {
  // Sorted names make the first of the two hard-linked files the stored one.
  return new Uint8Array(execFileSync("tar", [`--format=${format}`, "--sort=name", "-cf", "-", "-C", dir, "."], { maxBuffer: 64 << 20 }));
}

const byPath = (entries: TarEntry[]) => new Map(entries.map((e) => [e.path.replace(/^\.\//, "").replace(/\/$/, ""), e]));
const str = (d: Uint8Array) => new TextDecoder().decode(d);

describe("readTar on GNU tar's archives", () => {
  for (const format of ["gnu", "pax", "ustar"]) {
    it(`reads the ${format} format: files, modes, folders, symlinks, hardlinks${format === "ustar" ? "" : ", long names and link targets"}`, () => {
      const dir = fixtureDir();
      if (format === "ustar") execFileSync("rm", [join(dir, "longlink")]); // ustar cannot hold a 126-byte link target
      const entries = byPath(readTar(systemTar(format, dir)));
      expect(entries.get("")?.type).toBe("directory");
      expect(str(entries.get("hello.txt")!.data)).toBe("hello\n");
      expect(entries.get("run.sh")!.mode & 0o777).toBe(0o755);
      expect(entries.get("hello.txt")!.mode & 0o777).toBe(statSync(join(dir, "hello.txt")).mode & 0o777);
      expect(str(entries.get("été.txt")!.data)).toBe("accents");
      expect(entries.get(LONG_DIR)?.type).toBe("directory");
      const long = entries.get(LONG_FILE)!;
      expect(long.type).toBe("file");
      expect(long.data).toEqual(new Uint8Array(1500).fill(0x78));
      expect(entries.get("link")).toMatchObject({ type: "symlink", linkTarget: "hello.txt", size: 0 });
      if (format !== "ustar") expect(entries.get("longlink")).toMatchObject({ type: "symlink", linkTarget: LONG_TARGET });
      expect(entries.get("xhard.txt")).toMatchObject({ type: "hardlink", linkTarget: "./hello.txt", size: 0 });
    });
  }

  it("reads names listed on the command line (no './' prefix) and an empty archive", () => {
    const dir = fixtureDir();
    const bytes = new Uint8Array(execFileSync("tar", ["-cf", "-", "-C", dir, "hello.txt", "run.sh"]));
    expect(readTar(bytes).map((e) => e.path)).toEqual(["hello.txt", "run.sh"]);
    expect(readTar(new Uint8Array(execFileSync("tar", ["-cf", "-", "-T", "/dev/null"])))).toEqual([]);
  });

  it("applies a pax global header to the entries after it", () => {
    // git archive style: a 'g' header first; GNU tar writes one with --pax-option.
    const dir = fixtureDir();
    const bytes = new Uint8Array(execFileSync("tar", ["--format=pax", "--pax-option=globexthdr.name=g,comment:=hi", "-cf", "-", "-C", dir, "hello.txt"]));
    expect(readTar(bytes).map((e) => [e.path, str(e.data)])).toEqual([["hello.txt", "hello\n"]]);
  });
});

const sample: TarWriteEntry[] = [
  { path: "bin", type: "directory", mode: 0o755 },
  { path: "bin/run.sh", type: "file", mode: 0o755, data: new TextEncoder().encode("#!/bin/sh\necho run\n") },
  { path: "empty", type: "file", mode: 0o600 },
  { path: "link", type: "symlink", mode: 0o777, linkTarget: "bin/run.sh" },
  { path: "u".repeat(120) + "/" + "v".repeat(80), type: "file", mode: 0o644, data: new Uint8Array([1, 2, 3]) }, // ustar prefix
  { path: ("w".repeat(99) + "/").repeat(3) + "deep.txt", type: "file", mode: 0o644, data: new Uint8Array(513).fill(7) }, // pax path
  { path: "farlink", type: "symlink", mode: 0o777, linkTarget: "x/".repeat(60) + "y" }, // pax linkpath
  { path: "ünïcode.txt", type: "file", mode: 0o640, data: new TextEncoder().encode("ü") },
];

describe("writeTar", () => {
  it("round-trips through readTar", () => {
    const back = readTar(writeTar(sample));
    expect(back.map((e) => ({ path: e.path.replace(/\/$/, ""), type: e.type, mode: e.mode, data: Array.from(e.data), linkTarget: e.linkTarget }))).toEqual(
      sample.map((e) => ({ path: e.path, type: e.type, mode: e.mode, data: Array.from(e.data ?? []), linkTarget: e.linkTarget })),
    );
  });

  it("is deterministic and writes mtime 0 and owner 0:0, which GNU tar reads back exactly", () => {
    const bytes = writeTar(sample);
    expect(writeTar(sample)).toEqual(bytes);
    const listing = execFileSync("tar", ["-tvf", "-", "--numeric-owner", "--full-time"], { input: bytes }).toString();
    expect(listing).toContain("0/0");
    expect(listing).toContain("1970-01-01 00:00:00");
    expect(listing).not.toMatch(/warning|ignor/i);

    const out = mkdtempSync(join(tmpdir(), "tar-out-"));
    execFileSync("tar", ["-xf", "-", "-C", out], { input: bytes });
    expect(readFileSync(join(out, "bin/run.sh"), "utf8")).toBe("#!/bin/sh\necho run\n");
    expect(statSync(join(out, "bin/run.sh")).mode & 0o777).toBe(0o755);
    expect(statSync(join(out, "empty")).mode & 0o777).toBe(0o600);
    expect(readlinkSync(join(out, "link"))).toBe("bin/run.sh");
    expect(readlinkSync(join(out, "farlink"))).toBe("x/".repeat(60) + "y");
    expect(readFileSync(join(out, sample[5].path))).toEqual(Buffer.alloc(513, 7));
    expect(readFileSync(join(out, sample[4].path))).toEqual(Buffer.from([1, 2, 3]));
    expect(readFileSync(join(out, "ünïcode.txt"), "utf8")).toBe("ü");
  });
});

describe("readTar refuses malformed archives", () => {
  const good = () => writeTar([{ path: "a.txt", type: "file", mode: 0o644, data: new TextEncoder().encode("abc") }]);
  const refuses = (bytes: Uint8Array, message: RegExp) => {
    expect(() => readTar(bytes)).toThrow(TarError);
    expect(() => readTar(bytes)).toThrow(message);
  };
  // Rewrites a header field and fixes the checksum, so that only the field is wrong.
  const withField = (bytes: Uint8Array, headerAt: number, offset: number, value: string) => {
    const b = bytes.slice();
    b.fill(0, headerAt + offset, headerAt + offset + value.length);
    b.set(new TextEncoder().encode(value), headerAt + offset);
    b.fill(0x20, headerAt + 148, headerAt + 156);
    const sum = b.subarray(headerAt, headerAt + 512).reduce((n, x) => n + x, 0);
    b.set(new TextEncoder().encode(sum.toString(8).padStart(6, "0") + "\0 "), headerAt + 148);
    return b;
  };

  it("a header whose checksum does not match", () => {
    const b = good();
    b[0] ^= 1;
    refuses(b, /checksum mismatch/);
  });

  it("random bytes", () => {
    refuses(crypto.getRandomValues(new Uint8Array(2048)), /not a tar archive/);
  });

  it("data running past the end, and no end-of-archive marker", () => {
    refuses(good().subarray(0, 514), /entry data runs past the end/);
    refuses(good().subarray(0, 1024), /no end-of-archive marker/);
    refuses(new Uint8Array(100), /no end-of-archive marker/);
  });

  it("a size field that is not octal", () => {
    refuses(withField(good(), 0, 124, "00000000009"), /size field is not an octal number/);
  });

  it("a name that is not UTF-8", () => {
    const b = good();
    b[1] = 0xff;
    refuses(b, /checksum mismatch/);
    refuses(withField(b, 0, 2, "\0"), /entry name is not valid UTF-8/); // same bytes, checksum fixed
  });

  it("malformed pax records", () => {
    const pax = (record: string) => {
      const body = new TextEncoder().encode(record);
      const tar = writeTar([{ path: "p".repeat(300), type: "file", mode: 0o644 }]); // pax header first
      const b = new Uint8Array(tar.length);
      b.set(tar);
      b.fill(0, 512, 1024);
      b.set(body, 512);
      return withField(b, 0, 124, body.length.toString(8).padStart(11, "0"));
    };
    refuses(pax("x path=abc\n"), /bad length/);
    refuses(pax("99 path=abc\n"), /length does not match/);
    refuses(pax("9 pathabc\n"), /length does not match|no key=value/);
    refuses(pax("10 pathab\n"), /no key=value/);
    refuses(pax("13 size=12a4\n"), /pax size is not a number/);
    expect(readTar(pax("13 path=okay\n"))[0].path).toBe("okay");
  });

  it("an extended header with no entry after it", () => {
    const tar = writeTar([{ path: "p".repeat(300), type: "file", mode: 0o644 }]);
    const b = tar.slice();
    b.fill(0, 1024, 1536); // the real header becomes the end marker
    refuses(b, /extended header with no entry/);
  });
});
