// `npm run agent:package -- --version V --out FILE [--source DIR] [--key KEYFILE]`:
// builds a self-contained, signed agent package (schema/agent-package.ts) from the
// project tree at DIR (default: this checkout). The target machine needs only Node ≥ 22.
//
// Layout of a package:
//   bin/outpost-agent.mjs      the command: `node <package>/bin/outpost-agent.mjs register|run …`
//   lib/*.mjs                  esbuild bundles of the CLI, the monitor, the worker and the
//                              mask filter, and the chunks they share
//   schema/migrations/journal  files the agent reads by path (see relocate())
//   node_modules/@libsql/<platform>/  libSQL's native part, one per platform carried
//   package.json               {version}: what agent/version.ts reads
// plus outpost-agent-manifest.json / .sig at the root.
//
// The agent finds its other processes and data by `new URL("<relative>", import.meta.url)`.
// A bundle moves that code, so the builder rewrites each such reference to where the
// target lives in the package: another entry point (its bundle), package.json, or a
// project file carried at its project-relative path. A reference it cannot place, or any
// other use of import.meta in agent code, fails the build instead of a broken package.
//
// The output depends only on the tree, the version and the key: bundles are
// deterministic, tar entries are sorted with mtime 0, gzip has no time or OS byte, and
// Ed25519 signatures are deterministic. Building an unchanged tree again gives the same
// bytes, so uploading it again is a 200, not a 409.
import { build, type Plugin } from "esbuild";
import { existsSync, lstatSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, extname, join, relative, resolve, sep } from "node:path";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";
import {
  AGENT_PACKAGE_LIMITS,
  importSigningKey,
  PACKAGE_MONITOR,
  PACKAGE_WORKER,
  readAgentPackage,
  writeAgentPackageTar,
  type AgentManifest,
  type SigningKey,
} from "../schema/agent-package.ts";
import { sha256Hex } from "../schema/plugin-package.ts";
import { semver } from "../schema/plugin.ts";
import { RELEASE_KEY_FILE } from "./local-state.ts";

const checkout = join(import.meta.dirname, "..");

export const PACKAGE_ENTRY = "bin/outpost-agent.mjs";
export const NODE_REQUIREMENT = ">=22";
const LIB = "lib"; // every bundle and chunk: relocated URLs are relative to this one folder
// Entry points, by bundle name. Agent code starts the worker and the mask filter by path;
// a new script started that way must be listed here (the build says so).
// The command is agent/cli.ts itself, run by the package's own bin shim (binShim()); the
// checkout's agent/bin/outpost-agent.mjs is for running from source only (it tunes V8
// for type stripping, which a package does not need).
const ENTRIES: Record<string, string> = {
  "outpost-agent": "agent/cli.ts",
  monitor: "agent/monitor/monitor.ts", // PACKAGE_MONITOR: an earlier version's monitor hands over to it
  worker: "agent/worker/main.ts",
  "mask-filter": "agent/steps/mask-filter.ts",
};
// ws's optional native speed-ups: ws works without them (it catches the failed require).
const OPTIONAL_EXTERNALS = ["bufferutil", "utf-8-validate"];
// A bundle has no CommonJS `require`; libSQL loads its native part with one (by a name
// computed at run time), so each output gets a real one, resolving from lib/ — that is,
// from the package's own node_modules.
const REQUIRE_BANNER = 'import { createRequire as __outpostCreateRequire } from "node:module"; const require = __outpostCreateRequire(import.meta.url);';

export class AgentPackageBuildError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "AgentPackageBuildError";
  }
}

export type BuildOptions = { version: string; source?: string; key: SigningKey };
export type BuiltAgentPackage = { bytes: Uint8Array; sha256: string; manifest: AgentManifest; buildMs: number };
type PackageFile = { path: string; data: Uint8Array; mode: number };

export async function buildAgentPackage(opts: BuildOptions): Promise<BuiltAgentPackage> {
  const t0 = performance.now();
  const version = semver.safeParse(opts.version);
  if (!version.success) throw new AgentPackageBuildError(`--version ${JSON.stringify(opts.version)} is not semver (MAJOR.MINOR.PATCH, e.g. 1.4.0)`);
  const source = resolve(opts.source ?? checkout);
  for (const entry of Object.values(ENTRIES)) {
    if (!existsSync(join(source, entry))) throw new AgentPackageBuildError(`${source} is not an Outpost project tree: ${entry} is missing`);
  }
  const assets = new Set<string>(); // project-relative paths the agent reads by URL
  const bundles = await bundle(source, assets);
  for (const needed of [PACKAGE_WORKER, PACKAGE_MONITOR]) {
    if (!bundles.some((f) => f.path === needed)) throw new AgentPackageBuildError(`the build made no ${needed}, which upgraded agents start by that path`);
  }
  const natives = nativeParts(source);
  const files: PackageFile[] = [
    ...bundles,
    ...[...assets].flatMap((a) => carry(source, a)),
    ...natives.files,
    {
      path: "package.json",
      mode: 0o644,
      data: json({ name: "outpost-agent", version: opts.version, private: true, type: "module", engines: { node: NODE_REQUIREMENT }, bin: { "outpost-agent": PACKAGE_ENTRY }, outpost: { platforms: natives.platforms } }),
    },
    { path: PACKAGE_ENTRY, mode: 0o755, data: new TextEncoder().encode(binShim()) },
  ].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));

  const { tar } = await writeAgentPackageTar({ version: opts.version, platforms: natives.platforms, node: NODE_REQUIREMENT, entry: PACKAGE_ENTRY, files }, opts.key);
  if (tar.length > AGENT_PACKAGE_LIMITS.unpackedBytes) throw new AgentPackageBuildError(`the package unpacks to ${tar.length} bytes, more than the ${AGENT_PACKAGE_LIMITS.unpackedBytes} a server accepts (carry fewer platforms)`);
  const bytes = gzipDeterministic(tar);
  // Check it exactly as the server and the agent will: a build that passes uploads.
  const { manifest } = await readAgentPackage(bytes, [{ key: opts.key.publicKey, fingerprint: opts.key.fingerprint }]);
  return { bytes, sha256: await sha256Hex(bytes), manifest, buildMs: Math.round(performance.now() - t0) };
}

async function bundle(source: string, assets: Set<string>): Promise<PackageFile[]> {
  let result;
  try {
    result = await build({
      absWorkingDir: source,
      entryPoints: Object.fromEntries(Object.entries(ENTRIES).map(([name, path]) => [name, join(source, path)])),
      outdir: join(source, LIB), // never written (write: false): names the outputs
      outExtension: { ".js": ".mjs" },
      bundle: true,
      splitting: true,
      platform: "node",
      format: "esm",
      target: "node22",
      write: false,
      banner: { js: REQUIRE_BANNER },
      external: OPTIONAL_EXTERNALS,
      // A copy of the tree (--source) may lack node_modules: then this checkout's serve.
      nodePaths: [join(checkout, "node_modules")],
      plugins: [relocate(source, assets)],
      logLevel: "silent",
    });
  } catch (e) {
    const errors = (e as { errors?: { text: string; location?: { file: string; line: number } | null }[] }).errors;
    const detail = errors?.map((m) => (m.location ? `${m.location.file}:${m.location.line}: ${m.text}` : m.text)).join("; ");
    throw new AgentPackageBuildError(`bundling the agent failed: ${detail ?? (e as Error).message}`, { cause: e });
  }
  if (result.warnings.length > 0) throw new AgentPackageBuildError(`bundling the agent warned: ${result.warnings.map((w) => w.text).join("; ")}`);
  return result.outputFiles.map((f) => ({ path: `${LIB}/${relative(join(source, LIB), f.path).split(sep).join("/")}`, mode: 0o644, data: f.contents }));
}

const URL_REF = /new URL\(\s*(["'])([^"'`\n]+)\1\s*,\s*import\.meta\.url\s*\)/g;

// Rewrites `new URL("<rel>", import.meta.url)` in the project's own modules (node_modules
// are left alone: none of the agent's dependencies read files by URL).
function relocate(source: string, assets: Set<string>): Plugin {
  const entryByPath = new Map(Object.entries(ENTRIES).map(([name, path]) => [join(source, path), `./${name}.mjs`]));
  return {
    name: "outpost-relocate",
    setup(b) {
      b.onLoad({ filter: /\.(ts|mts|mjs|js)$/ }, (args) => {
        if (!args.path.startsWith(source + sep) || args.path.includes(`${sep}node_modules${sep}`)) return undefined;
        const text = readFileSync(args.path, "utf8");
        const where = relative(source, args.path);
        const errors: string[] = [];
        const rewritten = text.replace(URL_REF, (_all, _q, rel: string) => {
          const target = resolve(dirname(args.path), rel);
          const inTree = relative(source, target).split(sep).join("/");
          let to: string;
          if (entryByPath.has(target)) to = entryByPath.get(target)!;
          else if (inTree === "package.json") to = "../package.json";
          else if (!inTree.startsWith("..") && !inTree.split("/").includes("node_modules") && existsSync(target)) {
            if (/\.(ts|mts|mjs|js)$/.test(target)) errors.push(`${where} starts '${rel}' by path: add it to ENTRIES in scripts/agent-package.ts`);
            assets.add(inTree);
            to = `../${inTree}`;
          } else {
            errors.push(`${where} refers to '${rel}', which is not a file of the project tree`);
            to = rel;
          }
          return `new URL(${JSON.stringify(to)}, import.meta.url)`;
        });
        if (rewritten.replace(URL_REF, "").includes("import.meta")) errors.push(`${where} uses import.meta other than as new URL("<relative path>", import.meta.url): the builder cannot place that in a package`);
        if (errors.length > 0) return { errors: errors.map((text) => ({ text })) };
        return { contents: rewritten, loader: extname(args.path).includes("ts") ? "ts" : "js" };
      });
    },
  };
}

// A project file, or every regular file under a project folder, at its project path.
function carry(source: string, path: string): PackageFile[] {
  const full = join(source, path);
  const st = lstatSync(full);
  if (st.isFile()) return [{ path, mode: 0o644, data: new Uint8Array(readFileSync(full)) }];
  if (!st.isDirectory()) throw new AgentPackageBuildError(`${path} (read by the agent) is neither a file nor a folder`);
  return readdirSync(full).sort().flatMap((name) => carry(source, `${path}/${name}`));
}

// libSQL's native part is one npm package per platform (@libsql/linux-x64-gnu, …,
// each with "neon": {"type": "binary"}). Whatever is installed is carried: npm installs
// the packages of the platforms it is asked for (`npm install --os/--cpu/--libc`).
function nativeParts(source: string): { platforms: string[]; files: PackageFile[] } {
  const roots = [join(source, "node_modules/@libsql"), join(checkout, "node_modules/@libsql")];
  const root = roots.find((r) => existsSync(r) && binaryPackages(r).length > 0);
  if (!root) throw new AgentPackageBuildError(`no native libSQL package (@libsql/<platform>) in ${roots.join(" or ")}: run npm ci`);
  const files: PackageFile[] = [];
  const platforms: string[] = [];
  for (const { dir, main } of binaryPackages(root)) {
    const name = dir.split(sep).pop()!;
    platforms.push(name);
    for (const f of ["package.json", main]) {
      files.push({ path: `node_modules/@libsql/${name}/${f}`, mode: 0o644, data: new Uint8Array(readFileSync(join(dir, f))) });
    }
  }
  return { platforms, files };
}

function binaryPackages(root: string): { dir: string; main: string }[] {
  return readdirSync(root)
    .sort()
    .map((name) => join(root, name))
    .flatMap((dir) => {
      const pj = join(dir, "package.json");
      if (!existsSync(pj)) return [];
      const meta = JSON.parse(readFileSync(pj, "utf8")) as { main?: string; neon?: { type?: string } };
      if (meta.neon?.type !== "binary" || !meta.main || !existsSync(join(dir, meta.main))) return [];
      return [{ dir, main: meta.main }];
    });
}

// Checks the Node version and the platform before any bundle loads (a static import
// would run first): on a machine the package carries no native part for, libSQL would
// only fail later, in the worker, with "Cannot find module '@libsql/…'".
function binShim(): string {
  return [
    "#!/usr/bin/env node",
    "// The packaged outpost-agent (docs/agent-lifecycle.md): node <package>/bin/outpost-agent.mjs register|run …",
    'import { readFileSync } from "node:fs";',
    'const major = Number(process.versions.node.split(".")[0]);',
    "if (major < 22) {",
    "  process.stderr.write(`outpost-agent: needs Node >= 22; this is ${process.version}\\n`);",
    "  process.exit(1);",
    "}",
    'const { platforms } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).outpost;',
    "const here = `${process.platform}-${process.arch}`;",
    "if (!platforms.some((p) => p === here || p.startsWith(`${here}-`))) {",
    '  process.stderr.write(`outpost-agent: this package runs on ${platforms.join(", ")}; this machine is ${here}\\n`);',
    "  process.exit(1);",
    "}",
    'const { runCli } = await import("../lib/outpost-agent.mjs");',
    "runCli(process.argv.slice(2));",
    "",
  ].join("\n");
}

const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value, null, 2) + "\n");

const GZIP_OS_BYTE = 9;
const GZIP_OS_UNKNOWN = 255;
function gzipDeterministic(tar: Uint8Array): Uint8Array {
  const gz = new Uint8Array(gzipSync(tar, { level: 9 }));
  gz[GZIP_OS_BYTE] = GZIP_OS_UNKNOWN; // zlib writes mtime 0; the OS byte is the builder's
  return gz;
}

export function defaultKeyFile(env: NodeJS.ProcessEnv = process.env): string {
  return join(resolve(env.OUTPOST_STATE_DIR || ".outpost"), RELEASE_KEY_FILE);
}

export async function readSigningKey(file: string): Promise<SigningKey> {
  let pem: string;
  try {
    pem = readFileSync(file, "utf8");
  } catch (e) {
    const hint = (e as NodeJS.ErrnoException).code === "ENOENT" ? " (start the local server once — npm start or npm run server — to generate the release key, or give --key)" : "";
    throw new AgentPackageBuildError(`cannot read the release key ${file}: ${(e as Error).message}${hint}`, { cause: e });
  }
  try {
    return await importSigningKey(pem);
  } catch (e) {
    throw new AgentPackageBuildError(`${file}: ${(e as Error).message}`, { cause: e });
  }
}

const USAGE = "usage: npm run agent:package -- --version V --out FILE [--source DIR] [--key KEYFILE]";

if (import.meta.main) {
  let values;
  try {
    ({ values } = parseArgs({ options: { version: { type: "string" }, out: { type: "string" }, source: { type: "string" }, key: { type: "string" } }, strict: true, allowPositionals: false }));
  } catch (e) {
    console.error(`agent-package: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  if (!values.version || !values.out) {
    console.error(`agent-package: --version and --out are required\n${USAGE}`);
    process.exit(2);
  }
  // npm runs scripts in the project root; paths given on its command line are the caller's.
  const given = (p: string) => resolve(process.env.INIT_CWD ?? process.cwd(), p);
  try {
    const keyFile = values.key ? given(values.key) : defaultKeyFile();
    const key = await readSigningKey(keyFile);
    const built = await buildAgentPackage({ version: values.version, source: values.source && given(values.source), key });
    writeFileSync(given(values.out), built.bytes, { mode: 0o644 });
    console.log(
      `built outpost-agent ${built.manifest.version} → ${values.out} (${built.bytes.length} bytes, sha256 ${built.sha256}, ` +
        `platforms ${built.manifest.platforms.join(", ")}, signed by ${key.fingerprint} (${keyFile}), ${built.buildMs} ms)`,
    );
  } catch (e) {
    console.error(`agent-package: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  }
}
