// A plug-in package (docs/plugins.md): a gzip'd tar with outpost-plugin.json at its
// root. The Worker checks an upload with readPluginPackage before storing it; the
// agent checks the same bytes again before unpacking them, so whatever passes here
// can be written under a fresh folder without leaving it:
// - every path is relative, '/'-separated, normalised, without '..', and unique;
// - every parent of an entry is a directory of the package (never a file or a
//   symlink, so extraction never writes through a link);
// - symlinks resolve inside the package root, following the package's own links;
// - hardlinks become copies of an earlier file of the package (extraction then needs
//   no link support, and a link cannot reach outside);
// - devices, fifos and unknown entry types are refused; modes keep rwx bits only.
import { describeZodError } from "./errors.ts";
import { MANIFEST_FILE, PLUGIN_LIMITS, pluginManifest, type PluginManifest } from "./plugin.ts";
import { GunzipError, gunzipCapped } from "./gzip.ts";
import { readTar, TarError, type TarEntry } from "./tar.ts";

export type PackageEntry = { path: string; type: "file" | "directory" | "symlink"; mode: number; data?: Uint8Array; linkTarget?: string };
export type PluginPackage = { manifest: PluginManifest; entries: PackageEntry[] };

export class PluginPackageError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PluginPackageError";
  }
}

// Tar headers and padding come on top of the files' own bytes: up to two 512-byte
// blocks of headers and one of padding per entry, plus long-name and pax headers.
const TAR_OVERHEAD_BYTES = PLUGIN_LIMITS.entries * 4 * 512 + 4096;
const MAX_SYMLINK_HOPS = 40; // as Linux's own limit

export async function readPluginPackage(bytes: Uint8Array): Promise<PluginPackage> {
  if (bytes.length > PLUGIN_LIMITS.packageBytes) throw new PluginPackageError(`the package is larger than ${PLUGIN_LIMITS.packageBytes} bytes`);
  let tar: Uint8Array;
  try {
    tar = await gunzipCapped(bytes, PLUGIN_LIMITS.unpackedBytes + TAR_OVERHEAD_BYTES, PLUGIN_LIMITS.unpackedBytes);
  } catch (e) {
    if (e instanceof GunzipError) throw new PluginPackageError(e.message, { cause: e });
    throw e;
  }
  let raw: TarEntry[];
  try {
    raw = readTar(tar);
  } catch (e) {
    if (e instanceof TarError) throw new PluginPackageError(`not a valid tar archive inside the gzip: ${e.message}`, { cause: e });
    throw e;
  }
  const entries = normalise(raw);
  const manifest = readManifest(entries);
  checkRunPaths(manifest, entries);
  return { manifest, entries };
}

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

// "./a//b/" → ["a", "b"]; null for the root itself ("." or "./").
function segments(path: string, what: string): string[] | null {
  if (path.startsWith("/")) throw new PluginPackageError(`${what} '${path}' escapes the package root (absolute path)`);
  if (path.includes("\\")) throw new PluginPackageError(`${what} '${path}' contains a backslash; use '/' between folders`);
  if (/[\u0000-\u001f\u007f]/.test(path)) throw new PluginPackageError(`${what} ${JSON.stringify(path)} contains a control character`);
  if (path.length > 4096) throw new PluginPackageError(`${what} '${path.slice(0, 64)}…' is longer than 4096 characters`);
  const parts = path.split("/").filter((s) => s !== "" && s !== ".");
  let depth = 0;
  for (const p of parts) {
    depth += p === ".." ? -1 : 1;
    if (depth < 0) throw new PluginPackageError(`${what} '${path}' escapes the package root`);
  }
  // Even when it stays inside, a '..' would make two spellings of one path.
  if (parts.includes("..")) throw new PluginPackageError(`${what} '${path}' contains '..'`);
  return parts.length === 0 ? null : parts;
}

function normalise(raw: TarEntry[]): PackageEntry[] {
  const byPath = new Map<string, PackageEntry>();
  const entries: PackageEntry[] = [];
  let unpacked = 0;
  for (const e of raw) {
    const parts = segments(e.path, "entry");
    if (parts === null) {
      if (e.type === "directory") continue; // the root folder itself, as `tar -C dir .` writes it
      throw new PluginPackageError(`entry '${e.path}' has no name`);
    }
    const path = parts.join("/");
    if (byPath.has(path)) throw new PluginPackageError(`entry '${path}' appears twice in the package`);
    const mode = e.mode & 0o777;
    let entry: PackageEntry;
    switch (e.type) {
      case "file":
        entry = { path, type: "file", mode, data: e.data };
        break;
      case "directory":
        entry = { path, type: "directory", mode };
        break;
      case "symlink":
        if (!e.linkTarget) throw new PluginPackageError(`symlink '${path}' has an empty target`);
        entry = { path, type: "symlink", mode, linkTarget: e.linkTarget };
        break;
      case "hardlink":
        entry = { path, type: "file", mode, data: hardlinkSource(path, e.linkTarget ?? "", byPath).data };
        break;
      default:
        throw new PluginPackageError(`entry '${path}' is a ${e.type === "other" ? `tar entry of type '${e.typeflag.replace(/\0/g, "\\0")}'` : e.type}; a package holds only files, folders and links`);
    }
    byPath.set(path, entry);
    entries.push(entry);
    if (entries.length > PLUGIN_LIMITS.entries) throw new PluginPackageError(`the package has more than ${PLUGIN_LIMITS.entries} entries`);
    unpacked += entry.data?.length ?? 0;
    if (unpacked > PLUGIN_LIMITS.unpackedBytes) throw new PluginPackageError(`the package unpacks to more than ${PLUGIN_LIMITS.unpackedBytes} bytes`);
  }
  for (const e of entries) checkParents(e, byPath);
  for (const e of entries) if (e.type === "symlink") resolveLink(e, byPath);
  return entries;
}

// Hardlink names are relative to the archive root, not to the link's folder.
function hardlinkSource(path: string, target: string, byPath: Map<string, PackageEntry>): PackageEntry {
  let parts: string[] | null;
  try {
    parts = segments(target, "hardlink target");
  } catch {
    throw new PluginPackageError(`hardlink '${path}' points out of the package root ('${target}')`);
  }
  const source = parts && byPath.get(parts.join("/"));
  if (!source || source.type !== "file") throw new PluginPackageError(`hardlink '${path}' points to '${target}', which is not a file earlier in the package`);
  return source;
}

function checkParents(e: PackageEntry, byPath: Map<string, PackageEntry>): void {
  const parts = e.path.split("/");
  for (let i = 1; i < parts.length; i++) {
    const parent = byPath.get(parts.slice(0, i).join("/"));
    if (parent && parent.type !== "directory") throw new PluginPackageError(`entry '${e.path}' is inside '${parent.path}', which is a ${parent.type}, not a folder`);
  }
}

// Resolves a symlink the way the kernel would inside the unpacked package, following the
// package's own links: where it ends must not be above the root.
function resolveLink(link: PackageEntry, byPath: Map<string, PackageEntry>): string[] {
  const out = (why = "") => new PluginPackageError(`symlink '${link.path}' points out of the package root ('${link.linkTarget}')${why}`);
  if (link.linkTarget!.startsWith("/")) throw out();
  let hops = 0;
  const walk = (base: string[], target: string): string[] => {
    if (++hops > MAX_SYMLINK_HOPS) throw new PluginPackageError(`symlink '${link.path}' is part of a loop of links`);
    if (target.startsWith("/")) throw out(hops > 1 ? " through another link" : "");
    const at = [...base];
    for (const seg of target.split("/")) {
      if (seg === "" || seg === ".") continue;
      if (seg === "..") {
        if (at.length === 0) throw out(hops > 1 ? " through another link" : "");
        at.pop();
        continue;
      }
      at.push(seg);
      const hit = byPath.get(at.join("/"));
      if (hit?.type === "symlink") {
        at.pop();
        const resolved = walk(at, hit.linkTarget!);
        at.length = 0;
        at.push(...resolved);
      }
    }
    return at;
  };
  return walk(link.path.split("/").slice(0, -1), link.linkTarget!);
}

function readManifest(entries: PackageEntry[]): PluginManifest {
  const entry = entries.find((e) => e.path === MANIFEST_FILE);
  if (!entry) throw new PluginPackageError(`no ${MANIFEST_FILE} at the package root`);
  if (entry.type !== "file") throw new PluginPackageError(`${MANIFEST_FILE} is a ${entry.type}; it must be a regular file`);
  const data = entry.data!;
  if (data.length > PLUGIN_LIMITS.manifestBytes) throw new PluginPackageError(`${MANIFEST_FILE} is larger than ${PLUGIN_LIMITS.manifestBytes} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(data));
  } catch (e) {
    throw new PluginPackageError(`${MANIFEST_FILE} is not valid UTF-8 JSON: ${(e as Error).message}`);
  }
  const parsed = pluginManifest.safeParse(value);
  if (!parsed.success) throw new PluginPackageError(`${MANIFEST_FILE}: ${describeZodError(parsed.error)}`);
  return parsed.data;
}

// A `run` program given as a path into the package ("./greet.sh", "bin/x") must be there;
// a bare name ("sh") is looked up on the agent's PATH, an absolute path is the machine's.
function checkRunPaths(manifest: PluginManifest, entries: PackageEntry[]): void {
  const byPath = new Map(entries.map((e) => [e.path, e]));
  manifest.steps.forEach((step, i) => {
    const program = step.run[0];
    if (program.startsWith("/") || !(program.includes("/") || program.startsWith("."))) return;
    const where = `${MANIFEST_FILE}: steps.${i}.run.0`;
    let parts: string[] | null;
    try {
      parts = segments(program, "program");
    } catch (e) {
      throw new PluginPackageError(`${where}: ${(e as Error).message}`);
    }
    let target = parts && byPath.get(parts.join("/"));
    if (target?.type === "symlink") {
      const resolved = resolveLink(target, byPath).join("/");
      target = byPath.get(resolved);
    }
    if (!target || target.type !== "file") throw new PluginPackageError(`${where}: '${program}' is not a file of the package`);
  });
}
