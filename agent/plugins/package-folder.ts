// Writing a plug-in package's entries into a folder, and checking later that the
// folder still holds exactly what was written (agent/plugins/plugin-cache.ts uses both).
//
//   writePackageFolder(folder, entries, pkg)    folder: an empty directory; writes every
//                                               entry, then the listing LISTING_FILE
//   checkPackageFolder(folder, sha256)          → null when intact, else what is wrong
//   PackageFolderError                          an entry that would leave the folder, …
//
// schema/plugin-package.ts has already refused entries that escape the package; the
// checks here are a second line of defence, made on the paths that are actually
// written: every entry must resolve strictly inside the folder, no entry may sit
// under a symlink or a file of the package (so nothing is ever written through a
// link), a symlink must be relative and lead inside the folder — by its text, and
// once everything is written, by the kernel's own resolution (realpath) when its
// target exists. Symlinks are created last, files with O_EXCL, so an earlier entry
// can never redirect a later one.
//
// Modes: the agent home is private (agent/home.ts): directories 0700, files 0600, or
// 0700 when the package gave the file any execute bit; never anything for group/other.
//
// The listing (LISTING_FILE at the folder's root, a name no package may use) records
// the package's sha256 and each entry: a file's size and sha256, a symlink's target, a
// directory. The check compares it with the disk; files the listing does not name are
// ignored (a plug-in's runtime may leave caches next to its code).
import { createHash } from "node:crypto";
import { chmod, lstat, mkdir, readFile, readlink, realpath, symlink, writeFile } from "node:fs/promises";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { z } from "zod";
import type { PackageEntry } from "../../schema/plugin-package.ts";
import { AgentError } from "../errors.ts";
import { DIR_MODE, FILE_MODE } from "../home.ts";

export const LISTING_FILE = ".outpost-package.json";
const EXEC_FILE_MODE = 0o700;

export class PackageFolderError extends AgentError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, context, options);
    this.name = "PackageFolderError";
  }
}

const listedEntry = z.discriminatedUnion("type", [
  z.strictObject({ path: z.string(), type: z.literal("file"), size: z.int().min(0), sha256: z.string().regex(/^[0-9a-f]{64}$/), mode: z.int() }),
  z.strictObject({ path: z.string(), type: z.literal("directory") }),
  z.strictObject({ path: z.string(), type: z.literal("symlink"), target: z.string() }),
]);
const listing = z.strictObject({ format: z.literal(1), id: z.string(), version: z.string(), sha256: z.string(), entries: z.array(listedEntry) });
type Listing = z.infer<typeof listing>;
type ListedEntry = z.infer<typeof listedEntry>;

export const sha256Hex = (data: Uint8Array): string => createHash("sha256").update(data).digest("hex");

export const fileMode = (packageMode: number): number => ((packageMode & 0o111) !== 0 ? EXEC_FILE_MODE : FILE_MODE);

// folder: an existing, empty directory (a fresh temporary one: the cache renames it
// into place once this returns).
export async function writePackageFolder(folder: string, entries: readonly PackageEntry[], pkg: { id: string; version: string; sha256: string }): Promise<void> {
  const root = resolve(folder);
  const planned = plan(root, entries);
  for (const e of planned.filter((p) => p.entry.type === "directory")) {
    await makeParents(root, e.full);
    await mkdir(e.full, { mode: DIR_MODE }).catch((err) => {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err; // made earlier as a parent
    });
    await chmod(e.full, DIR_MODE);
  }
  for (const e of planned.filter((p) => p.entry.type === "file")) {
    await makeParents(root, e.full);
    const mode = fileMode(e.entry.mode);
    await writeFile(e.full, e.entry.data ?? new Uint8Array(), { flag: "wx", mode }); // wx: never through an existing entry
    await chmod(e.full, mode); // whatever the umask
  }
  for (const e of planned.filter((p) => p.entry.type === "symlink")) {
    await makeParents(root, e.full);
    await symlink(e.entry.linkTarget!, e.full);
  }
  const realRoot = await realpath(root);
  for (const e of planned.filter((p) => p.entry.type === "symlink")) await checkResolvedLink(realRoot, e.entry, e.full);

  const list: Listing = { format: 1, id: pkg.id, version: pkg.version, sha256: pkg.sha256, entries: planned.map((p) => listed(p.entry)) };
  await writeFile(join(root, LISTING_FILE), JSON.stringify(list), { flag: "wx", mode: FILE_MODE });
  await chmod(join(root, LISTING_FILE), FILE_MODE);
}

// Null when every entry of the listing is on disk as it was written; else the first
// difference found. The disk is read only through lstat/readlink (never following a link).
export async function checkPackageFolder(folder: string, sha256: string): Promise<string | null> {
  const root = resolve(folder);
  let list: Listing;
  try {
    const parsed = listing.safeParse(JSON.parse(await readFile(join(root, LISTING_FILE), "utf8")));
    if (!parsed.success) return `${LISTING_FILE} is not a listing this agent wrote`;
    list = parsed.data;
  } catch (e) {
    if (isGone(e)) return `${LISTING_FILE} is missing`;
    if (e instanceof SyntaxError) return `${LISTING_FILE} is not valid JSON`;
    throw e;
  }
  if (list.sha256 !== sha256) return `${LISTING_FILE} is for package sha256 ${list.sha256}, not ${sha256}`;
  for (const entry of list.entries) {
    const full = resolve(root, entry.path);
    if (!within(root, full)) return `${LISTING_FILE} names '${entry.path}', outside the folder`;
    const problem = await checkEntry(entry, full);
    if (problem !== null) return problem;
  }
  return null;
}

async function checkEntry(entry: ListedEntry, full: string): Promise<string | null> {
  try {
    const st = await lstat(full);
    switch (entry.type) {
      case "directory":
        return st.isDirectory() ? null : `'${entry.path}' is no longer a directory`;
      case "symlink":
        if (!st.isSymbolicLink()) return `'${entry.path}' is no longer a symlink`;
        return (await readlink(full)) === entry.target ? null : `symlink '${entry.path}' points elsewhere`;
      case "file": {
        if (!st.isFile()) return `'${entry.path}' is no longer a regular file`;
        if (st.size !== entry.size) return `'${entry.path}' has ${st.size} bytes, ${entry.size} were written`;
        if ((st.mode & 0o777) !== entry.mode) return `'${entry.path}' has mode ${(st.mode & 0o777).toString(8)}, ${entry.mode.toString(8)} was written`;
        return sha256Hex(await readFile(full)) === entry.sha256 ? null : `'${entry.path}' has changed (sha256 differs)`;
      }
    }
  } catch (e) {
    if (isGone(e)) return `'${entry.path}' is missing`;
    throw e;
  }
}

type Planned = { entry: PackageEntry; full: string };

// Validates every entry before anything is written, so a refused package leaves no file behind.
function plan(root: string, entries: readonly PackageEntry[]): Planned[] {
  const refuse = (e: PackageEntry, why: string) => new PackageFolderError(`package entry '${e.path}' refused: ${why}`, { path: e.path, type: e.type });
  const byFull = new Map<string, PackageEntry>();
  const planned: Planned[] = [];
  for (const e of entries) {
    if (e.path === "" || isAbsolute(e.path) || e.path.split("/").some((s) => s === "" || s === "." || s === "..")) throw refuse(e, "not a plain relative path");
    const full = resolve(root, e.path);
    if (!within(root, full)) throw refuse(e, "it leads out of the folder");
    if (full === join(root, LISTING_FILE)) throw refuse(e, `${LISTING_FILE} is the agent's own file`);
    if (byFull.has(full)) throw refuse(e, "it appears twice");
    if (e.type === "file" && !(e.data instanceof Uint8Array)) throw refuse(e, "a file without data");
    if (e.type === "symlink") {
      const target = e.linkTarget ?? "";
      if (target === "" || isAbsolute(target)) throw refuse(e, `symlink target '${target}' is not a relative path`);
      if (!withinOrRoot(root, resolve(dirname(full), target))) throw refuse(e, `symlink target '${target}' leads out of the folder`);
    }
    byFull.set(full, e);
    planned.push({ entry: e, full });
  }
  for (const p of planned) {
    for (let up = dirname(p.full); up !== root && within(root, up); up = dirname(up)) {
      const parent = byFull.get(up);
      if (parent && parent.type !== "directory") throw refuse(p.entry, `it lies under '${parent.path}', a ${parent.type}`);
    }
  }
  return planned;
}

// Parents an entry needs that the package did not list (tar need not list folders).
async function makeParents(root: string, full: string): Promise<void> {
  const parent = dirname(full);
  if (parent === root) return;
  const first = await mkdir(parent, { recursive: true, mode: DIR_MODE });
  if (first === undefined) return;
  for (let d = parent; within(root, d) && d.length >= first.length; d = dirname(d)) await chmod(d, DIR_MODE);
}

// Where the kernel takes the link, now that every entry exists. A target that does not
// exist is left (its text was checked above; the package check followed its links).
async function checkResolvedLink(realRoot: string, e: PackageEntry, full: string): Promise<void> {
  let target: string;
  try {
    target = await realpath(full);
  } catch (err) {
    if (isGone(err)) return;
    throw new PackageFolderError(`package entry '${e.path}' refused: symlink '${e.linkTarget}' cannot be resolved`, { path: e.path }, { cause: err });
  }
  if (!withinOrRoot(realRoot, target)) throw new PackageFolderError(`package entry '${e.path}' refused: symlink '${e.linkTarget}' leads out of the folder (to ${target})`, { path: e.path });
}

function listed(e: PackageEntry): ListedEntry {
  if (e.type === "directory") return { path: e.path, type: "directory" };
  if (e.type === "symlink") return { path: e.path, type: "symlink", target: e.linkTarget! };
  return { path: e.path, type: "file", size: e.data!.length, sha256: sha256Hex(e.data!), mode: fileMode(e.mode) };
}

// Strictly below root.
function within(root: string, full: string): boolean {
  const rel = relative(root, full);
  return rel !== "" && rel !== ".." && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}
const withinOrRoot = (root: string, full: string): boolean => full === root || within(root, full);

// Not there (or something else in its place): a damaged folder, not an I/O failure.
const isGone = (e: unknown): boolean => ["ENOENT", "ENOTDIR", "EISDIR"].includes((e as NodeJS.ErrnoException)?.code ?? "");
