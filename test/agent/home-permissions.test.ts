// The agent home is private to the agent's user (agent/README.md "Home
// directory"), with real processes started under umask 022 into a home that
// already exists with mode 0755 and holds files an earlier version left
// world-readable. What a step creates in its working directory keeps the modes the
// agent's starting umask gives it. A home holding a file of another user is refused.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { projectRoot, startProc, TestServer, type Proc } from "../support/local-server.ts";
import { killGroups, readPid } from "../support/pids.ts";

const server = new TestServer();
const bin = join(projectRoot, "agent/bin/outpost-agent.mjs");
const procs: Proc[] = [];
const stepGroups: number[] = [];

beforeAll(async () => {
  await server.start();
});
afterAll(async () => {
  for (const p of procs) await p.stop();
  killGroups(stepGroups);
  await server.stop();
});

// The agent CLI as a user with the usual umask 022 would start it.
const agentUnderUmask022 = (args: string[], log: string) =>
  startProc("/bin/sh", ["-c", 'umask 022; exec "$@"', "sh", process.execPath, bin, ...args], { logFile: join(server.work, log) });
const mode = (p: string) => statSync(p).mode & 0o777;
const create = (path: string, m: number) => {
  writeFileSync(path, "left by an earlier version\n");
  chmodSync(path, m);
};

describe("home permissions", () => {
  it("register and run make a 0755 home private (0700 dirs, 0600 files) whatever the umask; a step's own files keep 0644", async () => {
    const home = join(server.work, "agents", "perm-agent");
    mkdirSync(home, { recursive: true, mode: 0o755 });
    chmodSync(home, 0o755);
    const tok = await server.api("POST", "/api/v1/registration-tokens", {});
    const reg = agentUnderUmask022(["register", "--server", server.base, "--token", tok.json.token, "--name", "perm-agent", "--home", home], "agent-perm-register.log");
    expect(await reg.exited).toBe(0);
    expect(mode(home)).toBe(0o700);
    for (const f of ["settings.json", "credential.json"]) expect(mode(join(home, f)), f).toBe(0o600);

    // What an earlier version left: a world-readable home, journal and step output; and a user's file in work/.
    chmodSync(home, 0o755);
    create(join(home, "journal.db"), 0o644);
    writeFileSync(join(home, "journal.db"), ""); // an empty file is an empty SQLite database
    mkdirSync(join(home, "steps", "old-step"), { recursive: true, mode: 0o755 });
    chmodSync(join(home, "steps"), 0o755);
    create(join(home, "steps", "old-step", "output.log"), 0o644);
    mkdirSync(join(home, "work"), { mode: 0o755 });
    create(join(home, "work", "kept.txt"), 0o644);

    const agent = agentUnderUmask022(["run", "--home", home], "agent-perm-agent.log");
    procs.push(agent);
    await server.waitAgentOnline("perm-agent");
    const r = await server.api("POST", "/api/v1/deployments", {
      agents: ["perm-agent"],
      steps: [{ name: "touch", type: "shell", command: "echo hello; touch made-by-step; mkdir dir-by-step" }],
    });
    expect(r.status, r.text).toBe(201);
    const done = await server.waitDeployment(r.json.id);
    expect(done.status).toBe("succeeded");
    const stepDir = join(home, "steps", done.steps[0].id);
    const pid = readPid(join(stepDir, "pid"));
    if (pid) stepGroups.push(pid);

    expect(mode(home)).toBe(0o700);
    for (const f of ["settings.json", "credential.json", "journal.db", "monitor.pid", "worker.pid"]) expect(mode(join(home, f)), f).toBe(0o600);
    for (const d of [join(home, "steps"), join(home, "steps", "old-step"), join(home, "work"), stepDir]) expect(mode(d), d).toBe(0o700);
    for (const f of ["output.log", "status", "pid", "command.sh"]) expect(mode(join(stepDir, f)), f).toBe(0o600);
    expect(mode(join(home, "steps", "old-step", "output.log"))).toBe(0o600);
    for (const f of readdirSync(home).filter((f) => f.startsWith("journal.db"))) expect(mode(join(home, f)), f).toBe(0o600);
    // The step ran with the umask the agent was started with, in the deployment's own
    // work folder (private, like work/); what the step creates there is the user's.
    const work = join(home, "work", r.json.id);
    expect(mode(work)).toBe(0o700);
    expect(mode(join(work, "made-by-step"))).toBe(0o644);
    expect(mode(join(work, "dir-by-step"))).toBe(0o755);
    expect(mode(join(home, "work", "kept.txt"))).toBe(0o644);
  });

  it.skipIf(process.geteuid?.() !== 0)("refuses to run on a home holding a file of another user, saying how to fix it", async () => {
    const home = await server.registerAgent("perm-foreign");
    const foreign = join(home, "journal.db");
    writeFileSync(foreign, "");
    chownSync(foreign, 65534, 65534);
    const agent = agentUnderUmask022(["run", "--home", home], "agent-perm-foreign.log");
    procs.push(agent);
    expect(await agent.exited).toBe(1);
    const log = readFileSync(agent.logFile, "utf8");
    expect(log).toContain(`refusing to use agent home ${home}: ${foreign} is owned by uid 65534, not by uid 0 that runs the agent`);
    expect(log).toContain(`chown -R 0:0 ${home} && chmod 700 ${home}`);
  });
});
