// docs/protocol.md §Commands, lost-journal safety (invariant 2), with real
// processes: an agent whose journal.db is deleted (settings and credential kept)
// pulls after=0 again; the server answers with what it had seen acknowledged,
// and every command at or below that is ended as lost — its steps reported
// `interrupted` ("agent has no record of this step (journal lost)") — never run.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stepPaths } from "../../agent/steps/shell-step.ts";
import { NO_RECORD_REASON } from "../../agent/worker/reports.ts";
import { TestServer, waitFor, type Proc } from "../support/local-server.ts";
import { readPid, isRunning as alive, killGroups } from "../support/pids.ts";

const server = new TestServer();
const agents: Proc[] = [];
const stepGroups: number[] = [];

beforeAll(async () => {
  await server.start();
});

afterAll(async () => {
  for (const a of agents) await a.stop();
  killGroups(stepGroups); // a step left running by a failed assertion
  await server.stop();
});

const lines = (file: string) => (existsSync(file) ? readFileSync(file, "utf8").split("\n").filter(Boolean) : []);
const agentId = (home: string): string => JSON.parse(readFileSync(join(home, "settings.json"), "utf8")).agentId;

async function start(name: string, home: string): Promise<Proc> {
  const p = server.startAgent(name, home);
  agents.push(p);
  await server.waitAgentOnline(name);
  return p;
}

async function deploy(agent: string, commands: string[]): Promise<{ dep: string; stepIds: string[] }> {
  const r = await server.api("POST", "/api/v1/deployments", { agents: [agent], steps: commands.map((command, i) => ({ name: `s${i}`, type: "shell", command })) });
  expect(r.status, r.text).toBe(201);
  const view = await server.api("GET", `/api/v1/deployments/${r.json.id}`);
  return { dep: r.json.id, stepIds: view.json.steps.map((s: { id: string }) => s.id) };
}

// The server's cumulative acknowledgement of this agent's commands.
const waitAcked = (home: string, seq: number) =>
  waitFor(async () => (await server.api("GET", `/api/v1/agents/${agentId(home)}`)).json?.channel?.acked >= seq, 20_000, `the server to hold seq ${seq} acknowledged`);

// Stops the agent (steps survive) and deletes its journal, keeping settings and credential.
async function loseJournal(agent: Proc, home: string): Promise<void> {
  await agent.stop();
  for (const f of ["journal.db", "journal.db-wal", "journal.db-shm"]) rmSync(join(home, f), { force: true });
  expect(existsSync(join(home, "credential.json"))).toBe(true);
}

const LOST_LINE = /this journal has no record of seq 1: the journal was lost or restored from an older copy/;

describe("§Commands: a lost journal never runs a command twice", () => {
  it("a command that already ran is not run again; its interrupted report is a no-op on the finished step", async () => {
    const name = "lost-ran";
    const home = await server.registerAgent(name);
    let agent = await start(name, home);
    const count = join(server.work, "count-lost-ran");
    const { dep, stepIds } = await deploy(name, [`echo "$OUTPOST_STEP_ID" >> ${count}; echo ran`]);
    expect((await server.waitDeployment(dep, 30_000)).status).toBe("succeeded");
    await waitAcked(home, 1);
    await loseJournal(agent, home);

    agent = await start(name, home);
    await waitFor(async () => LOST_LINE.test(readFileSync(agent.logFile, "utf8")), 20_000, "the agent to end seq 1 as lost");
    // Reported interrupted (same report id as the real result, so applied once: not at all).
    await waitFor(async () => (await server.api("GET", `/api/v1/agents/${agentId(home)}`)).json?.channel?.pendingProjections === 0, 10_000, "projections");
    const after = await server.api("GET", `/api/v1/deployments/${dep}`);
    expect(after.json.status).toBe("succeeded");
    expect(after.json.steps[0]).toMatchObject({ status: "succeeded", exitCode: 0 });
    expect(lines(count)).toEqual([stepIds[0]]);

    // The agent goes on working normally with its new journal.
    const next = await deploy(name, [`echo "$OUTPOST_STEP_ID" >> ${count}`]);
    expect((await server.waitDeployment(next.dep, 30_000)).status).toBe("succeeded");
    expect(lines(count)).toEqual([stepIds[0], next.stepIds[0]]);
  });

  it("a command acknowledged but not finished (one step running, one not started) is reported interrupted, never run", async () => {
    const name = "lost-acked";
    const home = await server.registerAgent(name);
    let agent = await start(name, home);
    const go = join(server.work, "go-lost-acked");
    const ended = join(server.work, "ended-lost-acked");
    const count = join(server.work, "count-lost-acked");
    const { dep, stepIds } = await deploy(name, [`while [ ! -e ${go} ]; do sleep 0.1; done; echo ended > ${ended}`, `echo "$OUTPOST_STEP_ID" >> ${count}`]);
    await waitFor(async () => (await server.api("GET", `/api/v1/deployments/${dep}`)).json?.steps?.[0]?.status === "running", 30_000, "step 1 running");
    const stepPid = await waitFor(async () => readPid(stepPaths(join(home, "steps"), stepIds[0]).pidFile), 10_000, "step 1's pid file");
    stepGroups.push(stepPid);
    await waitAcked(home, 1); // acknowledged right after it was stored, before any step ended
    await loseJournal(agent, home);

    agent = await start(name, home);
    const done = await server.waitDeployment(dep, 20_000);
    expect(done.status).toBe("failed");
    expect(done.steps.map((s: { status: string; reason: string }) => [s.status, s.reason])).toEqual([
      ["interrupted", NO_RECORD_REASON],
      ["interrupted", NO_RECORD_REASON],
    ]);
    expect(readFileSync(agent.logFile, "utf8")).toMatch(LOST_LINE);
    expect(lines(count)).toEqual([]); // step 2 never ran

    // Step 1's process, started before the journal was lost, is left alone; its end reaches no one.
    expect(alive(stepPid)).toBe(true);
    writeFileSync(go, "");
    await waitFor(async () => existsSync(ended) && !alive(stepPid), 10_000, "step 1's process to end on its own");
    expect((await server.api("GET", `/api/v1/deployments/${dep}`)).json.steps[0]).toMatchObject({ status: "interrupted", reason: NO_RECORD_REASON });
    expect(lines(count)).toEqual([]);
  });
});
