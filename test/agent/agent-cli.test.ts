// `outpost-agent register` and `run --concurrency` against the real local server
// (`run --concurrency`: docs/protocol.md §Commands; register is outside the protocol doc).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { projectRoot, TestServer, type Proc } from "../support/local-server.ts";

const server = new TestServer();
const bin = join(projectRoot, "agent/bin/outpost-agent.mjs");
const procs: Proc[] = [];

beforeAll(async () => {
  await server.start();
});
afterAll(async () => {
  for (const p of procs) await p.stop();
  await server.stop();
});

async function token(): Promise<string> {
  const r = await server.api("POST", "/api/v1/registration-tokens", {});
  expect(r.status).toBe(201);
  return r.json.token;
}

const register = (tok: string, name: string, home: string) =>
  spawnSync(process.execPath, [bin, "register", "--server", server.base, "--token", tok, "--name", name, "--home", home], { encoding: "utf8", timeout: 30_000 });

// register without --token: the token comes from `extra` flags or the environment.
const registerWith = (extra: string[], name: string, env: NodeJS.ProcessEnv = {}) => {
  const { OUTPOST_REGISTRATION_TOKEN: _, ...clean } = process.env;
  return spawnSync(process.execPath, [bin, "register", "--server", server.base, "--name", name, "--home", mkdtempSync(join(server.work, "home-")), ...extra], {
    encoding: "utf8",
    timeout: 30_000,
    env: { ...clean, ...env },
  });
};

describe("register", () => {
  it("writes settings and credential (0600) and the server lists the agent", async () => {
    const home = mkdtempSync(join(server.work, "home-"));
    const r = register(await token(), "cli-agent", home);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/registered agent cli-agent/);
    const settings = JSON.parse(readFileSync(join(home, "settings.json"), "utf8"));
    expect(settings).toMatchObject({ server: server.base, name: "cli-agent", insecure: false, maxConcurrentDeployments: 4 });
    expect(settings.agentId).toMatch(/.+/);
    const cred = JSON.parse(readFileSync(join(home, "credential.json"), "utf8"));
    expect(cred.credential.length).toBeGreaterThan(10);
    expect(r.stdout).not.toContain(cred.credential);
    for (const f of ["settings.json", "credential.json"]) expect(statSync(join(home, f)).mode & 0o777).toBe(0o600);
    const agents = await server.api("GET", "/api/v1/agents");
    expect(agents.json.agents.map((a: { name: string }) => a.name)).toContain("cli-agent");
  });

  it("prints the server's error for a used token or a taken name, and exits 1", async () => {
    const tok = await token();
    expect(register(tok, "first-use", mkdtempSync(join(server.work, "home-"))).status).toBe(0);
    const again = register(tok, "second-use", mkdtempSync(join(server.work, "home-")));
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/refused by .* \(HTTP 401\): registration token is invalid, expired or already used/);
    const taken = register(await token(), "first-use", mkdtempSync(join(server.work, "home-")));
    expect(taken.status).toBe(1);
    expect(taken.stderr).toMatch(/\(HTTP 409\): .*already exists/);
  });
});

describe("register: where the registration token comes from", () => {
  it("reads it from --token-file (trimmed) or from OUTPOST_REGISTRATION_TOKEN, so it never shows in the process list", async () => {
    const file = join(server.work, "token.txt");
    writeFileSync(file, `  ${await token()}\n`, { mode: 0o600 });
    const fromFile = registerWith(["--token-file", file], "from-file");
    expect(fromFile.status, fromFile.stderr).toBe(0);
    const fromEnv = registerWith([], "from-env", { OUTPOST_REGISTRATION_TOKEN: await token() });
    expect(fromEnv.status, fromEnv.stderr).toBe(0);
    const names = (await server.api("GET", "/api/v1/agents")).json.agents.map((a: { name: string }) => a.name);
    expect(names).toEqual(expect.arrayContaining(["from-file", "from-env"]));
  });

  it("says clearly when no token is given, when both flags are, and when the file cannot be used (exit 2)", async () => {
    const none = registerWith([], "no-token");
    expect(none.status).toBe(2);
    expect(none.stderr).toMatch(/missing registration token: pass --token-file <file>, set OUTPOST_REGISTRATION_TOKEN, or pass --token <token>/);
    const both = registerWith(["--token", "a", "--token-file", "/nonexistent"], "two-tokens");
    expect(both.status).toBe(2);
    expect(both.stderr).toMatch(/--token or --token-file, not both/);
    const missing = registerWith(["--token-file", join(server.work, "no-such-file")], "bad-file");
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/cannot read --token-file .*no-such-file: ENOENT/);
    const empty = join(server.work, "empty-token");
    writeFileSync(empty, " \n");
    expect(registerWith(["--token-file", empty], "empty-file").stderr).toMatch(/--token-file .*empty-token is empty/);
  });
});

describe("run --concurrency", () => {
  it("runs at most N deployments at once", async () => {
    const home = await server.registerAgent("conc-agent");
    const agent = server.startAgent("conc-agent", home, ["--concurrency", "2"]);
    procs.push(agent);
    await server.waitAgentOnline("conc-agent");
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await server.api("POST", "/api/v1/deployments", { agents: ["conc-agent"], steps: [{ name: `s${i}`, type: "shell", command: "sleep 1.5" }] });
      expect(r.status).toBe(201);
      ids.push(r.json.id);
    }
    const spans: [number, number][] = [];
    for (const id of ids) {
      const d = await server.waitDeployment(id, 60_000);
      expect(d.status).toBe("succeeded");
      spans.push([Date.parse(d.steps[0].startedAt), Date.parse(d.steps[0].finishedAt)]);
    }
    // The server places each report batch's times on its own clock with that batch's
    // offset (receive time − sentAt), which varies by a request's latency: times of
    // reports from different batches may shift by tens of ms. A step that starts as
    // another ends may so seem to overlap it briefly; a third running step would
    // overlap the others by most of their 1.5 s.
    const SKEW_MS = 250;
    const overlapAt = (t: number) => spans.filter(([a, b]) => a <= t && t < b - SKEW_MS).length;
    const maxOverlap = Math.max(...spans.map(([a]) => overlapAt(a)));
    expect(maxOverlap).toBe(2);
  });
});
