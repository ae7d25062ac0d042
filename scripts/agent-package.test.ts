// scripts/agent-package.ts: builds a real package of this checkout, signed with the
// release key a local server generated, which that server accepts; then runs the
// packaged agent from a folder outside the repository with nothing but the `node`
// binary (no checkout, no node_modules, no npm, a bare PATH): --help, register, run, and
// a deployment whose step uses a secret (so the worker spawns the packaged mask filter).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AGENT_PACKAGE_LIMITS, importTrustedKeys, readAgentPackage } from "../schema/agent-package.ts";
import { sha256Hex } from "../schema/plugin-package.ts";
import { projectRoot, TestServer, waitFor } from "../test/support/local-server.ts";
import { buildAgentPackage, readSigningKey } from "./agent-package.ts";
import { localConfig, RELEASE_KEY_FILE, RELEASE_PUBLIC_KEY_FILE } from "./local-state.ts";

const VERSION = "7.1.0-test.1";
const builder = join(projectRoot, "scripts/agent-package.ts");
// What a target machine has: a shell's PATH without this checkout's node_modules/.bin.
const BARE_ENV = { PATH: "/usr/local/bin:/usr/bin:/bin", LANG: "C.UTF-8" };

const server = new TestServer();
const outside = mkdtempSync(join(tmpdir(), "outpost-agent-pkg-")); // never under the repository
const packageFile = join(outside, `outpost-agent-${VERSION}.tar.gz`);
const agents: ChildProcess[] = [];

function runBuilder(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [builder, ...args], { cwd: projectRoot, env: { ...process.env, ...env }, encoding: "utf8", timeout: 60_000 });
}

// The packaged agent, in its own process group, with a bare environment and cwd.
function packaged(pkgDir: string, args: string[], logFile: string): { child: ChildProcess; exited: Promise<number | null> } {
  const out = join(outside, logFile);
  const child = spawn(process.execPath, [join(pkgDir, "bin/outpost-agent.mjs"), ...args], { cwd: outside, env: { ...BARE_ENV, HOME: outside }, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const chunks: Buffer[] = [];
  child.stdout!.on("data", (d: Buffer) => chunks.push(d));
  child.stderr!.on("data", (d: Buffer) => chunks.push(d));
  const exited = new Promise<number | null>((resolve) =>
    child.on("exit", (code) => {
      writeFileSync(out, Buffer.concat(chunks));
      resolve(code);
    }),
  );
  agents.push(child);
  return { child, exited };
}

const output = (name: string) => readFileSync(join(outside, name), "utf8");

beforeAll(async () => {
  await server.start(); // generates the release key pair in its state dir and trusts it
}, 120_000);

afterAll(async () => {
  for (const a of agents) {
    if (a.exitCode === null && a.signalCode === null) {
      try { process.kill(-a.pid!, "SIGTERM"); } catch { /* gone */ }
      await new Promise((r) => a.once("exit", r));
    }
  }
  await server.stop();
  rmSync(outside, { recursive: true, force: true }); // three copies of the package: ~30 MB
}, 60_000);

describe("npm run agent:package", () => {
  it("builds a signed package of this checkout that the local server trusts and serves without a credential", async () => {
    const t0 = Date.now();
    const r = runBuilder(["--version", VERSION, "--out", packageFile, "--key", join(server.stateDir, RELEASE_KEY_FILE)]);
    expect(r.status, r.stderr).toBe(0);
    const buildMs = Date.now() - t0;
    const bytes = new Uint8Array(readFileSync(packageFile));
    console.log(`agent package: ${bytes.length} bytes, built in ${buildMs} ms: ${r.stdout.trim()}`);
    expect(buildMs).toBeLessThan(30_000);
    expect(bytes.length).toBeLessThan(AGENT_PACKAGE_LIMITS.packageBytes);

    // The shared verifier, with the public key the server was given.
    const keys = await importTrustedKeys(readFileSync(join(server.stateDir, RELEASE_PUBLIC_KEY_FILE), "utf8"));
    const pkg = await readAgentPackage(bytes, keys);
    const installed = readdirSync(join(projectRoot, "node_modules/@libsql")).filter((n) => /^(linux|darwin|win32)-/.test(n)).sort();
    expect(pkg.manifest).toMatchObject({ version: VERSION, platforms: installed, node: ">=22", entry: "bin/outpost-agent.mjs" });
    const paths = pkg.files.map((f) => f.path);
    for (const p of ["bin/outpost-agent.mjs", "lib/outpost-agent.mjs", "lib/worker.mjs", "lib/mask-filter.mjs", "package.json", "schema/migrations/journal/meta/_journal.json"]) expect(paths).toContain(p);
    for (const platform of installed) expect(paths).toContain(`node_modules/@libsql/${platform}/index.node`);
    expect(paths.filter((p) => p.endsWith(".ts"))).toEqual([]); // bundled: nothing left to strip types from

    const up = await fetch(`${server.base}/api/v1/agent-versions`, { method: "POST", headers: { authorization: `Bearer ${server.adminToken}` }, body: bytes as Uint8Array<ArrayBuffer> });
    expect(up.status, await up.clone().text()).toBe(201);
    expect(await up.json()).toEqual({ version: VERSION, sha256: await sha256Hex(bytes), platforms: installed });
    const down = await fetch(`${server.base}/agent/v1/agent-versions/current`);
    expect(down.status).toBe(200);
    expect(new Uint8Array(await down.arrayBuffer())).toEqual(bytes);
  }, 60_000);

  it("builds the same bytes again (a re-upload is a 200)", async () => {
    const key = await readSigningKey(join(server.stateDir, RELEASE_KEY_FILE));
    const again = await buildAgentPackage({ version: VERSION, key });
    expect(again.bytes).toEqual(new Uint8Array(readFileSync(packageFile)));
    const up = await fetch(`${server.base}/api/v1/agent-versions`, { method: "POST", headers: { authorization: `Bearer ${server.adminToken}` }, body: again.bytes as Uint8Array<ArrayBuffer> });
    expect(up.status).toBe(200);
  }, 60_000);

  it("runs from a folder outside the repository with only node: --help, register, run, a deployment with a secret", async () => {
    // Unpacked the way an agent will: only what the shared verifier accepted.
    const keys = await importTrustedKeys(readFileSync(join(server.stateDir, RELEASE_PUBLIC_KEY_FILE), "utf8"));
    const pkg = await readAgentPackage(new Uint8Array(readFileSync(packageFile)), keys);
    const pkgDir = join(outside, "outpost-agent");
    for (const f of pkg.files) {
      mkdirSync(dirname(join(pkgDir, f.path)), { recursive: true });
      writeFileSync(join(pkgDir, f.path), f.data, { mode: 0o644 });
    }

    const help = packaged(pkgDir, ["--help"], "help.log");
    expect(await help.exited).toBe(0);
    expect(output("help.log")).toMatch(/^usage:\n\s+outpost-agent register/);

    const tok = await server.api("POST", "/api/v1/registration-tokens", {});
    const tokenFile = join(outside, "token");
    writeFileSync(tokenFile, tok.json.token, { mode: 0o600 });
    const home = join(outside, "home");
    const reg = packaged(pkgDir, ["register", "--server", server.base, "--token-file", tokenFile, "--name", "packaged", "--home", home], "register.log");
    expect(await reg.exited, output("register.log")).toBe(0);

    packaged(pkgDir, ["run", "--home", home], "run.log");
    const agent = await server.waitAgentOnline("packaged");
    expect(agent.version).toBe(VERSION); // agent/version.ts read the package's own package.json

    expect((await server.api("POST", "/api/v1/secrets", { name: "PKG_SECRET", value: "hunter2-packaged" })).status).toBe(201);
    const dep = await server.api("POST", "/api/v1/deployments", {
      agents: ["packaged"],
      steps: [{ name: "say", type: "shell", command: 'echo "secret=${{ secrets.PKG_SECRET }} pwd=$(pwd)"' }],
    });
    expect(dep.status, dep.text).toBe(201);
    const done = await server.waitDeployment(dep.json.id, 60_000);
    expect(done.status, JSON.stringify(done)).toBe("succeeded");
    const log = await waitFor(async () => {
      const r = await server.api("GET", `/api/v1/deployments/${dep.json.id}/steps/${done.steps[0].id}/log`);
      return r.text.includes("secret=") ? r.text : null;
    }, 20_000, "the step's log");
    expect(log).toMatch(/^secret=\*\*\* pwd=\//); // masked by lib/mask-filter.mjs
    expect(log).not.toContain("hunter2");

    // A copy whose package.json claims only another platform refuses to start, saying why.
    const elsewhere = join(outside, "elsewhere");
    for (const f of pkg.files) {
      mkdirSync(dirname(join(elsewhere, f.path)), { recursive: true });
      writeFileSync(join(elsewhere, f.path), f.data);
    }
    const meta = JSON.parse(readFileSync(join(elsewhere, "package.json"), "utf8"));
    expect(meta.outpost.platforms).toEqual(pkg.manifest.platforms);
    writeFileSync(join(elsewhere, "package.json"), JSON.stringify({ ...meta, outpost: { platforms: ["plan9-mips-gnu"] } }));
    const refused = packaged(elsewhere, ["--help"], "elsewhere.log");
    expect(await refused.exited).toBe(1);
    expect(output("elsewhere.log")).toContain(`this package runs on plan9-mips-gnu; this machine is ${process.platform}-${process.arch}`);

    // The worker loaded libSQL's native part from the package, and nothing of this
    // checkout but the node binary the test runs on.
    const workerPid = Number(readFileSync(join(home, "worker.pid"), "utf8").trim());
    const mapped = new Set(readFileSync(`/proc/${workerPid}/maps`, "utf8").split("\n").map((l) => l.split(/\s+/).slice(5).join(" ")).filter((p) => p.startsWith("/")));
    expect([...mapped].some((p) => p.startsWith(join(pkgDir, "node_modules/@libsql/")))).toBe(true);
    expect([...mapped].filter((p) => p.startsWith(projectRoot + "/") && p !== realpathSync(process.execPath))).toEqual([]);
  }, 120_000);

  it("says what is wrong with its arguments or key", () => {
    const missing = runBuilder(["--out", join(outside, "x.tgz")]);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/--version and --out are required/);
    const badVersion = runBuilder(["--version", "v7", "--out", join(outside, "x.tgz"), "--key", join(server.stateDir, RELEASE_KEY_FILE)]);
    expect(badVersion.status).toBe(1);
    expect(badVersion.stderr).toMatch(/--version "v7" is not semver/);
    const noKey = runBuilder(["--version", "1.0.0", "--out", join(outside, "x.tgz")], { OUTPOST_STATE_DIR: join(outside, "no-state") });
    expect(noKey.status).toBe(1);
    expect(noKey.stderr).toMatch(/cannot read the release key .*no-state\/release-key\.pem.*start the local server once/);
    const notAKey = join(outside, "not-a-key.pem");
    writeFileSync(notAKey, "hello");
    chmodSync(notAKey, 0o600);
    const bad = runBuilder(["--version", "1.0.0", "--out", join(outside, "x.tgz"), "--key", notAKey]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/not-a-key\.pem: no '-----BEGIN PRIVATE KEY-----' block found/);
  });
});

describe("the local state's release key", () => {
  it("is generated once (private half 0600), kept across starts, and replaced by OUTPOST_RELEASE_PUBLIC_KEYS when given", async () => {
    const stateDir = join(outside, "state-keys");
    const first = localConfig({ OUTPOST_STATE_DIR: stateDir, PORT: "8787" });
    expect(statSync(join(stateDir, RELEASE_KEY_FILE)).mode & 0o777).toBe(0o600);
    expect(first.releasePublicKeys).toBe(readFileSync(join(stateDir, RELEASE_PUBLIC_KEY_FILE), "utf8"));
    expect(localConfig({ OUTPOST_STATE_DIR: stateDir }).releasePublicKeys).toBe(first.releasePublicKeys);
    // The pair matches: what the builder signs with is what the server trusts.
    const signing = await readSigningKey(join(stateDir, RELEASE_KEY_FILE));
    expect((await importTrustedKeys(first.releasePublicKeys))[0].fingerprint).toBe(signing.fingerprint);

    const other = join(outside, "state-env");
    const fromEnv = localConfig({ OUTPOST_STATE_DIR: other, OUTPOST_RELEASE_PUBLIC_KEYS: first.releasePublicKeys });
    expect(fromEnv.releasePublicKeys).toBe(first.releasePublicKeys);
    expect(existsSync(join(other, RELEASE_KEY_FILE))).toBe(false);
  });
});
