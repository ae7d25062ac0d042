// The agent's unpacked plug-in packages, in <home>/plugins (docs/plugins.md §Runtime:
// "The agent downloads a package it lacks over its own authenticated HTTPS, checks the
// sha256 the command names, unpacks it once into its home (atomic; concurrent steps
// share it; a corrupt copy is fetched again) and refuses entries that escape the folder").
//
//   const cache = new PluginCache({ dir: join(home, "plugins"), download, log });
//   const folder = await cache.ensure({ id, version, sha256 });   // absolute path
//   cache.folderOf({ id, version, sha256 })                       // same path, no I/O
//   PluginFetchError                                               every failure of ensure
//
// A package lives in <dir>/<id>/<version>-<first 16 hex of its sha256>. ensure():
//   - an existing folder is checked against the listing written inside it
//     (package-folder.ts: every file's size, mode and sha256, every link's target);
//     intact → returned as it is; damaged or without a listing → removed and fetched again;
//   - otherwise `download(id, version)` (the caller's authenticated GET
//     /agent/v1/plugins/:id/:version) gives the package's bytes; a sha256 other than the
//     command's is refused (PluginFetchError "… has sha256 <got>, the command expects
//     <expected>") and nothing is kept;
//   - the bytes are read with schema/plugin-package.ts (the same checks as the server's
//     at upload), the manifest must be the plug-in and version asked for, and the
//     entries are written into a temporary sibling folder that is renamed into place
//     only once complete: the folder is either absent or whole, even if the agent dies
//     halfway (a leftover temporary folder is removed by the next ensure);
//   - concurrent ensure() calls for one package share one promise (one download).
// A damaged folder is removed even if a running step still uses it: it is damaged.
import { lstat, mkdir, readdir, rename, rm } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { readPluginPackage, type PluginPackage } from "../../schema/plugin-package.ts";
import { pluginId, semver } from "../../schema/plugin.ts";
import { AgentError, describeCause } from "../errors.ts";
import { DIR_MODE } from "../home.ts";
import type { Logger } from "../log.ts";
import { checkPackageFolder, sha256Hex, writePackageFolder } from "./package-folder.ts";

export type PluginRef = { id: string; version: string; sha256: string };
export type PluginCacheOptions = {
  dir: string; // <home>/plugins
  download: (id: string, version: string) => Promise<Uint8Array>;
  log: Logger;
};

export class PluginFetchError extends AgentError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, context, options);
    this.name = "PluginFetchError";
  }
}

const TMP_PREFIX = ".tmp-";

export class PluginCache {
  readonly #dir: string;
  readonly #download: PluginCacheOptions["download"];
  readonly #log: Logger;
  readonly #inflight = new Map<string, Promise<string>>();

  constructor(opts: PluginCacheOptions) {
    this.#dir = resolve(opts.dir);
    this.#download = opts.download;
    this.#log = opts.log;
  }

  // Where the package is (or will be) unpacked. Throws PluginFetchError for a reference
  // that could not name a folder safely (the command's schema already refuses those).
  folderOf(p: PluginRef): string {
    const bad = !pluginId.safeParse(p.id).success || !semver.safeParse(p.version).success || !/^[0-9a-f]{64}$/.test(p.sha256);
    if (bad) throw new PluginFetchError(`not a plug-in reference: ${JSON.stringify(p).slice(0, 300)}`, { plugin: p.id, version: p.version });
    return join(this.#dir, p.id, `${p.version}-${p.sha256.slice(0, 16)}`);
  }

  ensure(p: PluginRef): Promise<string> {
    let folder: string;
    try {
      folder = this.folderOf(p);
    } catch (e) {
      return Promise.reject(e);
    }
    const running = this.#inflight.get(folder);
    if (running) return running;
    const job = this.#ensure(p, folder)
      .catch((e) => {
        if (e instanceof PluginFetchError) throw e;
        throw new PluginFetchError(`plug-in ${p.id}@${p.version}: ${describeCause(e)}`, { plugin: p.id, version: p.version, folder }, { cause: e });
      })
      .finally(() => this.#inflight.delete(folder));
    this.#inflight.set(folder, job);
    return job;
  }

  async #ensure(p: PluginRef, folder: string): Promise<string> {
    const name = `plug-in ${p.id}@${p.version}`;
    const context = { plugin: p.id, version: p.version, sha256: p.sha256, folder };
    const kind = await entryKind(folder);
    if (kind !== null) {
      const problem = kind === "directory" ? await this.#check(folder, p, context) : "not a directory";
      if (problem === null) return folder;
      this.#log.warn(`${name}: the unpacked copy in ${folder} is damaged (${problem}); fetching it again`);
      await rm(folder, { recursive: true, force: true });
    }
    const pkg = await this.#fetch(p, name, context);
    const parent = dirname(folder);
    await mkdir(parent, { recursive: true, mode: DIR_MODE });
    await this.#removeLeftovers(folder);
    const tmp = join(parent, `${TMP_PREFIX}${folderName(folder)}-${process.pid}-${Date.now()}`);
    await mkdir(tmp, { mode: DIR_MODE });
    try {
      await writePackageFolder(tmp, pkg.entries, p);
      await rename(tmp, folder);
    } catch (e) {
      await rm(tmp, { recursive: true, force: true }).catch((rmErr) => this.#log.error(`${name}: cannot remove the temporary folder ${tmp}`, rmErr));
      throw new PluginFetchError(`${name}: cannot unpack into ${folder}: ${describeCause(e)}`, context, { cause: e });
    }
    this.#log.info(`${name} (sha256 ${p.sha256.slice(0, 16)}…) unpacked into ${folder}`);
    return folder;
  }

  async #check(folder: string, p: PluginRef, context: Record<string, unknown>): Promise<string | null> {
    try {
      return await checkPackageFolder(folder, p.sha256);
    } catch (e) {
      throw new PluginFetchError(`plug-in ${p.id}@${p.version}: cannot check the unpacked copy in ${folder}: ${describeCause(e)}`, context, { cause: e });
    }
  }

  async #fetch(p: PluginRef, name: string, context: Record<string, unknown>): Promise<PluginPackage> {
    let bytes: Uint8Array;
    try {
      bytes = await this.#download(p.id, p.version);
    } catch (e) {
      throw new PluginFetchError(`${name}: cannot download the package: ${describeCause(e)}`, context, { cause: e });
    }
    const got = sha256Hex(bytes);
    if (got !== p.sha256) {
      throw new PluginFetchError(`${name}: the downloaded package has sha256 ${got}, the command expects ${p.sha256}; not kept`, { ...context, got });
    }
    let pkg: PluginPackage;
    try {
      pkg = await readPluginPackage(bytes);
    } catch (e) {
      throw new PluginFetchError(`${name}: the package cannot be unpacked: ${describeCause(e)}`, context, { cause: e });
    }
    if (pkg.manifest.id !== p.id || pkg.manifest.version !== p.version) {
      throw new PluginFetchError(`${name}: the package's manifest is ${pkg.manifest.id}@${pkg.manifest.version}`, context);
    }
    return pkg;
  }

  // Temporary folders of this package left by an agent that died while unpacking it.
  // Only this process unpacks into this home, and it unpacks a package once at a time.
  async #removeLeftovers(folder: string): Promise<void> {
    const prefix = `${TMP_PREFIX}${folderName(folder)}-`;
    for (const entry of await readdir(dirname(folder))) {
      if (!entry.startsWith(prefix)) continue;
      this.#log.warn(`removing ${entry}, left by an interrupted unpack`);
      await rm(join(dirname(folder), entry), { recursive: true, force: true });
    }
  }
}

const folderName = (folder: string): string => folder.slice(dirname(folder).length + 1);

// Without following a symlink: a link in the folder's place is damage, not the folder.
async function entryKind(path: string): Promise<"directory" | "other" | null> {
  try {
    return (await lstat(path)).isDirectory() ? "directory" : "other";
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
}
