// GET /agent/install.sh as an operator uses it: `curl -fsSL <server>/agent/install.sh |
// sh -s -- …` run by dash (/bin/sh here) from a folder outside the repository, with a
// PATH whose only Node is this checkout's Node 22 binary — no checkout, no npm. The
// package is this checkout, built and signed with the local state's release key
// (scripts/agent-package.ts) and uploaded to a real local server, which trusts that key.
// Also: the refusals (old Node, no systemd, a key the package is not signed with, a proxy
// that is not there) leave nothing registered, and the verifier the script carries
// refuses a tampered package and a tampered unpacked tree.
import { spawn, spawnSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { importTrustedKeys, readAgentPackage } from "../../schema/agent-package.ts";
import { readTar, writeTar, type TarWriteEntry } from "../../schema/tar.ts";
import { buildAgentPackage, readSigningKey } from "../../scripts/agent-package.ts";
import { RELEASE_KEY_FILE, RELEASE_PUBLIC_KEY_FILE } from "../../scripts/local-state.ts";
import { freePort, TestServer, waitFor } from "../support/local-server.ts";

const VERSION = "7.3.0-install.1";
const server = new TestServer();
const outside = mkdtempSync(join(tmpdir(), "outpost-install-")); // never under the repository
const bin = join(outside, "bin"); // `node` → this checkout's Node 22, first on PATH
const PATH = `${bin}:/usr/local/bin:/usr/bin:/bin`;
const groups: number[] = []; // process groups of the installers (a started agent stays in its group)
let packageBytes: Uint8Array;
let publicPem: string;

type Run = { code: number | null; out: string };

// The documented command line, run by /bin/sh from `outside`.
function install(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const child = spawn("/bin/sh", ["-c", '"$CURL" -fsSL "$OUTPOST_URL/agent/install.sh" | sh -s -- "$@"', "sh", ...args], {
    cwd: outside,
    env: { PATH, HOME: outside, LANG: "C.UTF-8", OUTPOST_URL: server.base, CURL: "curl", ...env },
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  groups.push(child.pid!);
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  return new Promise((resolve) => child.on("exit", (code) => resolve({ code, out })));
}

const token = async (): Promise<string> => (await server.api("POST", "/api/v1/registration-tokens", {})).json.token;
const agentNamed = async (name: string) => ((await server.api("GET", "/api/v1/agents")).json.agents as { name: string }[]).find((a) => a.name === name);

beforeAll(async () => {
  mkdirSync(bin);
  symlinkSync(process.execPath, join(bin, "node"));
  await server.start(); // generates the release key pair in its state dir and trusts it
  const built = await buildAgentPackage({ version: VERSION, key: await readSigningKey(join(server.stateDir, RELEASE_KEY_FILE)) });
  packageBytes = built.bytes;
  publicPem = readFileSync(join(server.stateDir, RELEASE_PUBLIC_KEY_FILE), "utf8");
  const up = await fetch(`${server.base}/api/v1/agent-versions`, { method: "POST", headers: { authorization: `Bearer ${server.adminToken}` }, body: packageBytes as Uint8Array<ArrayBuffer> });
  expect(up.status, await up.text()).toBe(201);
}, 180_000);

afterAll(async () => {
  for (const g of groups) {
    try { process.kill(-g, "SIGTERM"); } catch { /* gone */ }
  }
  // The background agent's monitor stops its worker on SIGTERM; then nothing may be left.
  await waitFor(async () => groups.every((g) => { try { process.kill(-g, 0); return false; } catch { return true; } }), 15_000, "the installed agents to stop").catch(() => {
    for (const g of groups) try { process.kill(-g, "SIGKILL"); } catch { /* gone */ }
  });
  await server.stop();
  rmSync(outside, { recursive: true, force: true });
}, 60_000);

describe("curl … /agent/install.sh | sh -s -- --token T --name N --home DIR", () => {
  it("installs into an empty folder from the server alone; the agent comes online and runs a deployment", async () => {
    const dir = join(outside, "agent");
    mkdirSync(dir);
    const r = await install(["--token", await token(), "--name", "installed", "--home", dir, "--tags", "web,eu"]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain(`verified outpost-agent ${VERSION}`);
    expect(r.out).toContain(`(release keys from ${server.base})`);
    expect(r.out).toMatch(/agent installed runs in the background \(pid \d+/);

    // Layout: versions/<v>, current → it, home private with the pinned keys.
    expect(readlinkSync(join(dir, "current"))).toBe(`versions/${VERSION}`);
    expect(existsSync(join(dir, "versions", VERSION, "bin/outpost-agent.mjs"))).toBe(true);
    expect(readdirSync(join(dir, "versions"))).toEqual([VERSION]); // no staging folder left
    expect(statSync(join(dir, "home")).mode & 0o777).toBe(0o700);
    const pinned = readFileSync(join(dir, "home/release-keys.pem"), "utf8");
    expect(pinned).toMatch(/^-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+/=]{1,64}\n-----END PUBLIC KEY-----\n$/);
    expect((await importTrustedKeys(pinned)).map((k) => k.fingerprint)).toEqual((await importTrustedKeys(publicPem)).map((k) => k.fingerprint));
    expect(statSync(join(dir, "home/release-keys.pem")).mode & 0o777).toBe(0o600);
    const pid = Number(readFileSync(join(dir, "agent.pid"), "utf8").trim());
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    expect(cmdline.slice(1, 5)).toEqual([join(dir, "current/bin/outpost-agent.mjs"), "run", "--home", join(dir, "home")]);
    expect(readFileSync(`/proc/${pid}/environ`, "utf8")).not.toContain("OUTPOST_REGISTRATION_TOKEN"); // spent, and not passed on

    const agent = await server.waitAgentOnline("installed");
    expect(agent.version).toBe(VERSION);
    expect(agent.tags).toEqual(["web", "eu"]);
    const dep = await server.api("POST", "/api/v1/deployments", { agents: ["installed"], steps: [{ name: "hi", type: "shell", command: "echo installed-by-script" }] });
    expect(dep.status, dep.text).toBe(201);
    const done = await server.waitDeployment(dep.json.id, 60_000);
    expect(done.status, JSON.stringify(done)).toBe("succeeded");
    const log = await waitFor(async () => {
      const l = await server.api("GET", `/api/v1/deployments/${dep.json.id}/steps/${done.steps[0].id}/log`);
      return l.text.includes("installed-by-script") ? l.text : null;
    }, 20_000, "the step's log");
    expect(log).toContain("installed-by-script");
  }, 120_000);

  it("works with only wget and shasum, and no gzip, beside POSIX tools: the second agent of the machine", async () => {
    // A PATH of exactly what the script may use (a tool it needs but lacks fails the run).
    const minimal = join(outside, "minimal-bin");
    mkdirSync(minimal);
    symlinkSync(process.execPath, join(minimal, "node"));
    for (const tool of ["sh", "printenv", "sed", "cut", "mktemp", "rm", "mkdir", "tar", "chmod", "mv", "ln", "cp", "cat", "sleep", "tail", "id", "nohup", "env", "wget", "shasum"]) {
      const found = ["/usr/bin", "/bin"].map((d) => join(d, tool)).find((p) => existsSync(p));
      expect(found, tool).toBeDefined();
      symlinkSync(found!, join(minimal, tool));
    }
    const dir = join(outside, "minimal");
    const r = await install(["--token", await token(), "--name", "minimal", "--home", dir], { PATH: minimal, CURL: "/usr/bin/curl" });
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain(`verified outpost-agent ${VERSION}`);
    const agent = await server.waitAgentOnline("minimal");
    expect(agent.version).toBe(VERSION);
  }, 120_000);

  it("with --service: refuses with exit 3 where systemd does not run (nothing registered), and writes the unit through the test hook", async () => {
    const tok = await token();
    const dir = join(outside, "service");
    const refused = await install(["--token", tok, "--name", "as-service", "--home", dir, "--service"]);
    expect(refused.code, refused.out).toBe(3);
    expect(refused.out).toMatch(/--service installs a systemd unit, and (this machine has no systemctl|systemd is not running on this machine)/);
    expect(existsSync(dir)).toBe(false);
    expect(await agentNamed("as-service")).toBeUndefined();

    const units = join(outside, "units");
    mkdirSync(units);
    const r = await install(["--token", tok, "--name", "as-service", "--home", dir, "--service"], { OUTPOST_INSTALL_UNIT_DIR: units });
    expect(r.code, r.out).toBe(0); // the same token: the refusal did not spend it
    expect(r.out).toContain("OUTPOST_INSTALL_UNIT_DIR is set (a test hook), so systemctl was not run");
    const unitFile = join(units, "outpost-agent-as-service.service");
    const unit = readFileSync(unitFile, "utf8");
    expect(statSync(unitFile).mode & 0o777).toBe(0o644);
    expect(unit).toContain(`\nExecStart=${join(bin, "node")} ${dir}/current/bin/outpost-agent.mjs run --home ${dir}/home\n`);
    expect(unit).toContain("\nRestart=always\n");
    expect(unit).toContain("\nKillMode=process\n");
    expect(unit).toContain("\nWantedBy=multi-user.target\n");
    expect(existsSync(join(dir, "agent.pid"))).toBe(false); // not started by the script
    expect(await agentNamed("as-service")).toMatchObject({ name: "as-service", status: "offline" });

    // A second run for the same unit name needs --replace.
    const again = await install(["--token", await token(), "--name", "as-service", "--home", join(outside, "service-2"), "--service"], { OUTPOST_INSTALL_UNIT_DIR: units });
    expect(again.code).toBe(1);
    expect(again.out).toContain("outpost-agent-as-service.service exists already");
  }, 120_000);

  it("refuses a package not signed by the keys given with --keys, and registers nothing", async () => {
    const other = generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }).toString();
    const keys = join(outside, "other-key.pub.pem");
    writeFileSync(keys, other);
    const dir = join(outside, "other-keys");
    const r = await install(["--token", await token(), "--name", "other-keys", "--home", dir, "--keys", keys]);
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/the package is refused \(untrusted\): the package is signed by a key not among the trusted release keys .*release keys from --keys .*other-key\.pub\.pem\); nothing was installed or registered/);
    expect(existsSync(join(dir, "versions"))).toBe(false);
    expect(await agentNamed("other-keys")).toBeUndefined();
  }, 60_000);

  it("checks its options and requirements first, and with --proxy downloads only through the proxy", async () => {
    const usage = await install(["--name", "x"]);
    expect(usage.code).toBe(2);
    expect(usage.out).toContain("missing --token");
    const unknown = await install(["--token", "t", "--name", "x", "--bogus"]);
    expect(unknown.code).toBe(2);
    expect(unknown.out).toContain("unknown option: --bogus");

    // A node older than 22 is named, with what to do.
    const oldNode = join(outside, "old-node");
    writeFileSync(oldNode, '#!/bin/sh\n[ "$1" = -v ] && echo v20.11.1\nexit 1\n');
    chmodSync(oldNode, 0o755);
    const old = await install(["--token", "t", "--name", "x", "--node", oldNode]);
    expect(old.code).toBe(1);
    expect(old.out).toContain(`${oldNode} is Node.js v20.11.1; the agent needs Node.js 22 or newer`);

    // A proxy nobody listens on: the download fails, naming the proxy without its password.
    const port = await freePort();
    const dir = join(outside, "proxied");
    const viaProxy = await install(["--token", await token(), "--name", "proxied", "--home", dir, "--proxy", `http://user:s3cret@127.0.0.1:${port}`]);
    expect(viaProxy.code).toBe(1);
    expect(viaProxy.out).toContain(`through the proxy http://127.0.0.1:${port}`);
    expect(viaProxy.out).not.toContain("s3cret");
    expect(await agentNamed("proxied")).toBeUndefined();
  }, 60_000);

  it("is a script dash reads (sh -n) whose origin is the server's", async () => {
    const script = await (await fetch(`${server.base}/agent/install.sh`)).text();
    expect(script).toContain(`\nSERVER='${server.base}'\n`);
    const check = spawnSync("dash", ["-n"], { input: script, encoding: "utf8" });
    expect(check.status, check.stderr).toBe(0);
  });
});

describe("the verifier install.sh carries", () => {
  let verifier: string;
  let keys: string;
  const verify = (mode: "package" | "tree", target: string, version = VERSION) =>
    spawnSync(join(bin, "node"), [verifier, mode, target, keys, version], { encoding: "utf8", env: { PATH } });
  const withTar = (edit: (entries: TarWriteEntry[]) => TarWriteEntry[]) => {
    const entries = readTar(new Uint8Array(gunzipSync(packageBytes))).map((e): TarWriteEntry => ({ path: e.path, type: e.type as "file", mode: e.mode, data: new Uint8Array(e.data) }));
    const file = join(outside, `edited-${Math.random().toString(36).slice(2)}.tar.gz`);
    const bytes = new Uint8Array(gzipSync(writeTar(edit(entries))));
    writeFileSync(file, bytes);
    return { file, bytes };
  };

  beforeAll(async () => {
    const script = await (await fetch(`${server.base}/agent/install.sh`)).text();
    const m = script.match(/<<'OUTPOST_VERIFY_EOF'\n([\s\S]*?)\nOUTPOST_VERIFY_EOF\n/);
    expect(m).not.toBeNull();
    verifier = join(outside, "verify.mjs");
    writeFileSync(verifier, m![1]);
    keys = join(outside, "server-keys.pem");
    writeFileSync(keys, publicPem);
  });

  it("accepts the server's package, and refuses it altered after signing, as the server's verifier does", async () => {
    const good = join(outside, "good.tar.gz");
    writeFileSync(good, packageBytes);
    const ok = verify("package", good);
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(new RegExp(`^verified outpost-agent ${VERSION.replace(/\./g, "\\.")} \\(\\d+ files, package\\), signed by release key [0-9a-f]{64}\n$`));

    const altered = withTar((entries) => entries.map((e) => (e.path === "lib/worker.mjs" ? { ...e, data: new TextEncoder().encode("process.exit(0)\n") } : e)));
    const refused = verify("package", altered.file);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/^the package is refused \(tampered\): file 'lib\/worker\.mjs' was altered after signing/);
    await expect(readAgentPackage(altered.bytes, await importTrustedKeys(publicPem))).rejects.toMatchObject({ problem: "tampered" });

    const extra = verify("package", withTar((entries) => [...entries, { path: "lib/extra.mjs", type: "file", mode: 0o644, data: new Uint8Array(1) }]).file);
    expect(extra.stderr).toMatch(/\(tampered\): file 'lib\/extra\.mjs' is not listed in the signed manifest/);
    const missing = verify("package", withTar((entries) => entries.filter((e) => e.path !== "lib/mask-filter.mjs")).file);
    expect(missing.stderr).toMatch(/\(tampered\): the package lacks 1 file\(s\) of its signed manifest: lib\/mask-filter\.mjs/);
    const link = verify("package", withTar((entries) => [...entries, { path: "lib/link", type: "symlink", mode: 0o777, linkTarget: "/etc/passwd" }]).file);
    expect(link.stderr).toMatch(/\(malformed\): entry "lib\/link" is a tar entry of type "2"/);
    const otherVersion = verify("package", good, "9.9.9");
    expect(otherVersion.stderr).toMatch(/\(tampered\): the package is version 7\.3\.0-install\.1, not 9\.9\.9/);
  });

  it("checks what tar unpacked against the signature: an added or changed file is refused", () => {
    const tree = join(outside, "tree");
    mkdirSync(tree);
    const tar = spawnSync("tar", ["-x", "-o", "-m", "-z", "-f", "-", "-C", tree], { input: packageBytes });
    expect(tar.status).toBe(0);
    expect(verify("tree", tree).status).toBe(0);
    writeFileSync(join(tree, "lib/planted.mjs"), "x");
    expect(verify("tree", tree).stderr).toMatch(/\(tampered\): file 'lib\/planted\.mjs' is not listed/);
    rmSync(join(tree, "lib/planted.mjs"));
    symlinkSync("/etc/passwd", join(tree, "lib/planted"));
    expect(verify("tree", tree).stderr).toMatch(/\(tampered\): 'lib\/planted' in the unpacked package is neither a file nor a folder/);
    expect(lstatSync(join(tree, "lib/planted")).isSymbolicLink()).toBe(true);
    rmSync(join(tree, "lib/planted"));
    writeFileSync(join(tree, "bin/outpost-agent.mjs"), "console.log('mine')\n");
    expect(verify("tree", tree).stderr).toMatch(/\(tampered\): file 'bin\/outpost-agent\.mjs' was altered after signing/);
  });
});
