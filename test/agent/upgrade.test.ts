// Issue 9, "done when" (docs/agent-lifecycle.md §Upgrade), with real processes:
// - the checkout packaged as version X and uploaded; a running agent upgraded while one
//   of its steps sleeps: the agent reports X, the step ends once with its whole output;
// - a copy of the tree whose worker exits at start, packaged as Y: the upgrade ends
//   `rolled-back`, the agent is back on X and runs the next deployment;
// - the monitor hands over to X's monitor in the same process (pid kept, worker adopted),
//   which supervises from then on, and a restarted agent starts X's monitor.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildAgentPackage, readSigningKey } from "../../scripts/agent-package.ts";
import { RELEASE_KEY_FILE } from "../../scripts/local-state.ts";
import { projectRoot, TestServer, waitFor, type Proc } from "../support/local-server.ts";
import { isRunning, killGroups, readPid } from "../support/pids.ts";
import { AGENT_VERSION } from "../../agent/version.ts";

const X = "9.1.0-upgrade.1";
const Y = "9.2.0-broken.1";
const server = new TestServer();
const NAME = "upgrade-agent";
let home: string;
let agent: Proc;
const groups: number[] = [];
const copies: string[] = [];

async function upload(version: string, source?: string): Promise<void> {
  const key = await readSigningKey(join(server.stateDir, RELEASE_KEY_FILE));
  const pkg = await buildAgentPackage({ version, key, ...(source ? { source } : {}) });
  const r = await fetch(`${server.base}/api/v1/agent-versions`, { method: "POST", body: new Uint8Array(pkg.bytes), headers: { authorization: `Bearer ${server.adminToken}` } });
  expect(r.status, await r.clone().text()).toBe(201);
}

const view = async () => (await server.api("GET", `/api/v1/agents/${NAME}`)).json as { version: string; upgrade: { version: string; state: string; reason: string | null } | null };

beforeAll(async () => {
  process.env.OUTPOST_UPGRADE_HEALTH_MS = "20000"; // the agent's monitor inherits it
  await server.start();
  home = await server.registerAgent(NAME);
  agent = server.startAgent(NAME, home);
  await server.waitAgentOnline(NAME);
});

afterAll(async () => {
  delete process.env.OUTPOST_UPGRADE_HEALTH_MS;
  killGroups(groups);
  await agent?.stop();
  await server.stop();
  for (const c of copies) rmSync(c, { recursive: true, force: true });
});

describe("agent upgrade", () => {
  it("switches a running agent to the packaged version X while a step sleeps; the step ends once with its output", async () => {
    await upload(X);
    const marker = join(server.work, "upgrade-runs.txt");
    const created = await server.api("POST", "/api/v1/deployments", {
      agents: [NAME],
      steps: [{ name: "slow", type: "shell", command: `echo run >> '${marker}'; echo before; sleep 6; echo after` }],
    });
    expect(created.status, created.text).toBe(201);
    const step = await waitFor(async () => {
      const d = await server.api("GET", `/api/v1/deployments/${created.json.id}`);
      return d.json?.steps?.[0]?.status === "running" ? d.json.steps[0] : null;
    }, 20_000, "the step running");
    groups.push(await waitFor(async () => readPid(join(home, "steps", step.id, "pid")), 10_000, "the step's pid"));

    const r = await server.api("POST", `/api/v1/agents/${NAME}/upgrade`, { version: X });
    expect(r.status, r.text).toBe(202);
    expect(r.json.upgrade).toMatchObject({ version: X, state: "pending" });
    const done = await waitFor(async () => {
      const v = await view();
      return v.upgrade?.state === "succeeded" && v.version === X ? v : null;
    }, 60_000, `the agent on ${X}`);
    expect(done.upgrade).toMatchObject({ version: X, state: "succeeded", reason: null });
    expect(JSON.parse(readFileSync(join(home, "agent-version.json"), "utf8"))).toMatchObject({ version: X });
    // The monitor itself is upgraded: X's monitor took this process over, worker and all.
    const log = await waitFor(async () => {
      const text = readFileSync(agent.logFile, "utf8");
      return text.includes(`monitor ${X} took over`) ? text : null;
    }, 20_000, `X's monitor taking over`);
    expect(log).toContain(`handing over to the monitor of version ${X}`);
    const worker = readPid(join(home, "worker.pid"));
    expect(log).toMatch(new RegExp(`monitor ${X.replace(/\./g, "\\.")} took over from monitor ${AGENT_VERSION.replace(/\./g, "\\.")} \\(pid ${agent.pid}\\), with worker ${worker}\\b`));
    expect(readPid(join(home, "monitor.pid"))).toBe(agent.pid);

    const ended = await server.waitDeployment(created.json.id, 30_000);
    expect(ended.status).toBe("succeeded");
    expect((await server.api("GET", `/api/v1/deployments/${ended.id}/steps/${step.id}/log`)).text).toBe("before\nafter\n");
    expect(readFileSync(marker, "utf8")).toBe("run\n");
  });

  it("X's monitor supervises after the hand-over: a killed worker is restarted on X", async () => {
    const worker = readPid(join(home, "worker.pid"))!;
    process.kill(worker, "SIGKILL");
    const next = await waitFor(async () => {
      const p = readPid(join(home, "worker.pid"));
      return p !== null && p !== worker ? p : null;
    }, 20_000, "a new worker");
    expect(readFileSync(agent.logFile, "utf8")).toMatch(new RegExp(`worker ${worker} exited \\(SIGKILL\\)`));
    await waitFor(async () => (await view()).version === X, 20_000, `the restarted worker (${next}) on ${X}`);
  });

  it("rolls back from a version whose worker exits at start; the agent stays on X and keeps working", async () => {
    const copy = mkdtempSync(join(tmpdir(), "outpost-broken-"));
    copies.push(copy);
    for (const d of ["agent", "schema", "package.json"]) cpSync(join(projectRoot, d), join(copy, d), { recursive: true });
    const main = join(copy, "agent/worker/main.ts");
    writeFileSync(main, `process.exit(3); // a broken release\n${readFileSync(main, "utf8")}`);
    await upload(Y, copy);

    const r = await server.api("POST", `/api/v1/agents/${NAME}/upgrade`, { version: Y });
    expect(r.status, r.text).toBe(202);
    const back = await waitFor(async () => {
      const v = await view();
      return v.upgrade?.version === Y && v.upgrade.state === "rolled-back" ? v : null;
    }, 60_000, "the upgrade to Y rolled back");
    expect(back.upgrade?.reason).toMatch(/exited \(code 3\) before it was healthy/);
    await waitFor(async () => (await view()).version === X, 20_000, `the agent reporting ${X} again`);
    expect(JSON.parse(readFileSync(join(home, "agent-version.json"), "utf8"))).toMatchObject({ version: X });

    const next = await server.api("POST", "/api/v1/deployments", { agents: [NAME], steps: [{ name: "after-rollback", type: "shell", command: "echo still here" }] });
    expect((await server.waitDeployment(next.json.id, 30_000)).status).toBe("succeeded");
  });

  it("an agent restarted in the middle of a switch runs the old version and says the upgrade did not complete", async () => {
    const Z = "9.3.0-hangs.1";
    const copy = mkdtempSync(join(tmpdir(), "outpost-hangs-"));
    copies.push(copy);
    for (const d of ["agent", "schema", "package.json"]) cpSync(join(projectRoot, d), join(copy, d), { recursive: true });
    const main = join(copy, "agent/worker/main.ts");
    writeFileSync(main, `await new Promise(() => {}); // never connects\n${readFileSync(main, "utf8")}`);
    await upload(Z, copy);
    expect((await server.api("POST", `/api/v1/agents/${NAME}/upgrade`, { version: Z })).status).toBe(202);
    await waitFor(async () => readFileSync(agent.logFile, "utf8").includes(`switching to version ${Z}`), 30_000, "the switch to Z");
    await agent.stop(); // the machine restarts, say, while Z is on trial
    agent = server.startAgent(NAME, home);
    const told = await waitFor(async () => {
      const v = await view();
      return v.upgrade?.version === Z && v.upgrade.state === "rolled-back" ? v : null;
    }, 60_000, "the interrupted switch reported");
    expect(told.upgrade?.reason).toMatch(new RegExp(`the switch did not complete .*running ${X.replace(/\./g, "\\.")}`));
    await waitFor(async () => (await view()).version === X, 20_000, `the agent on ${X}`);
    // Started from the checkout's command, the agent runs the monitor of the version it upgraded to.
    expect(readFileSync(agent.logFile, "utf8")).toMatch(new RegExp(`starting the monitor of version ${X.replace(/\./g, "\\.")} \\(.*/lib/monitor\\.mjs\\)`));
  });

  it("refuses an unknown version", async () => {
    const r = await server.api("POST", `/api/v1/agents/${NAME}/upgrade`, { version: "0.0.0-none" });
    expect(r.status).toBe(404);
  });

  it("the upgraded monitor stops its worker and itself on SIGTERM", async () => {
    const worker = readPid(join(home, "worker.pid"))!;
    process.kill(agent.pid, "SIGTERM"); // the monitor alone, as systemd would
    expect(await agent.exited).toBe(0);
    await waitFor(async () => !isRunning(worker), 15_000, `worker ${worker} stopped`);
  });
});
