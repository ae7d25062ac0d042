// `npm run plugin:pack -- DIR OUT.tgz` (or `node scripts/pack-plugin.ts DIR OUT.tgz`):
// packs a plug-in folder into a package (docs/plugins.md) and checks it the way the
// server will. The output depends only on the folder's names, contents, links and
// executable bits: entries sorted, mtime 0, owner 0:0, modes normalised as git does
// (0755/0644), a gzip header without time or OS. So packing an unchanged plug-in
// again gives the same bytes and the same sha256, which is what lets publishing
// tell "unchanged" (200) from "changed without a version bump" (409).
import { lstatSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { PLUGIN_LIMITS, type PluginManifest } from "../schema/plugin.ts";
import { PluginPackageError, readPluginPackage, sha256Hex } from "../schema/plugin-package.ts";
import { writeTar, type TarWriteEntry } from "../schema/tar.ts";

export class PackError extends Error {
  readonly dir: string;
  constructor(dir: string, message: string, options?: { cause?: unknown }) {
    super(`${dir}: ${message}`, options);
    this.name = "PackError";
    this.dir = dir;
  }
}

export type PackedPlugin = { bytes: Uint8Array; sha256: string; manifest: PluginManifest };

// Every file, folder and symlink under `dir` (not `dir` itself), sorted by path.
export function pluginDirEntries(dir: string): TarWriteEntry[] {
  const entries: TarWriteEntry[] = [];
  let bytes = 0;
  const walk = (rel: string) => {
    for (const name of readdirSync(join(dir, rel))) {
      const path = rel ? `${rel}/${name}` : name;
      const full = join(dir, path);
      const st = lstatSync(full);
      if (st.isSymbolicLink()) {
        entries.push({ path, type: "symlink", mode: 0o777, linkTarget: readlinkSync(full) });
      } else if (st.isDirectory()) {
        entries.push({ path, type: "directory", mode: 0o755 });
        walk(path);
      } else if (st.isFile()) {
        bytes += st.size;
        if (bytes > PLUGIN_LIMITS.unpackedBytes) throw new PackError(dir, `the files add up to more than ${PLUGIN_LIMITS.unpackedBytes} bytes`);
        entries.push({ path, type: "file", mode: st.mode & 0o100 ? 0o755 : 0o644, data: new Uint8Array(readFileSync(full)) });
      } else {
        throw new PackError(dir, `'${path}' is not a file, folder or symlink`);
      }
    }
  };
  walk("");
  return entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

const GZIP_OS_BYTE = 9;
const GZIP_OS_UNKNOWN = 255;

export function packPluginDir(dir: string): Uint8Array {
  const gz = new Uint8Array(gzipSync(writeTar(pluginDirEntries(dir)), { level: 9 }));
  // zlib writes mtime 0 already; the OS byte is the building platform's, so fix it.
  gz[GZIP_OS_BYTE] = GZIP_OS_UNKNOWN;
  return gz;
}

// Packs and checks with the server's own rules, so a bad plug-in fails here, naming why.
export async function packAndCheck(dir: string): Promise<PackedPlugin> {
  const bytes = packPluginDir(dir);
  try {
    const { manifest } = await readPluginPackage(bytes);
    return { bytes, manifest, sha256: await sha256Hex(bytes) };
  } catch (e) {
    if (e instanceof PluginPackageError) throw new PackError(dir, e.message, { cause: e });
    throw e;
  }
}

if (import.meta.main) {
  const [dir, out, ...rest] = process.argv.slice(2);
  if (!dir || !out || rest.length > 0) {
    console.error("usage: node scripts/pack-plugin.ts DIR OUT.tgz");
    process.exit(2);
  }
  try {
    const { bytes, manifest, sha256 } = await packAndCheck(dir);
    writeFileSync(out, bytes);
    console.log(`packed ${manifest.id} ${manifest.version} → ${out} (${bytes.length} bytes, sha256 ${sha256})`);
  } catch (e) {
    console.error(`pack-plugin: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  }
}
