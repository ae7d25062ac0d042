// Retention (agent/README.md "Retention") with real processes: a deployment that
// ended on the agent and was fully delivered leaves steps/ and the journal once the
// retention period has passed (here seconds: --retention-days accepts fractions);
// one still running stays; meta.lastSeq stays. settings.json's retentionDays
// applies when no flag is given.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@libsql/client";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { stepPaths } from "../../agent/steps/shell-step.ts";
import { TestServer, waitFor, type Proc } from "../support/local-server.ts";
import { killGroups, readPid } from "../support/pids.ts";

const server = new TestServer();
const NAME = "retaining";
const RETENTION_DAYS = 0.00005; // 4.3 s
const agents: Proc[] = [];
const stepGroups: number[] = [];

beforeAll(async () => {
  await server.start();
});
afterAll(async () => {
  for (const a of agents) await a.stop();
  killGroups(stepGroups);
  await server.stop();
});

async function journalRows(home: string) {
  const db = createClient({ url: pathToFileURL(join(home, "journal.db")).href });
  try {
    const count = async (table: string) => Number((await db.execute(`SELECT count(*) AS n FROM ${table}`)).rows[0].n);
    const lastSeq = (await db.execute("SELECT value FROM meta WHERE key = 'lastSeq'")).rows[0]?.value;
    return { commands: await count("commands"), steps: await count("steps"), outbox: await count("outbox"), lastSeq: Number(lastSeq) };
  } finally {
    db.close();
  }
}

async function deploy(command: string): Promise<{ dep: string; stepId: string }> {
  const r = await server.api("POST", "/api/v1/deployments", { agents: [NAME], steps: [{ name: "s", type: "shell", command }] });
  expect(r.status, r.text).toBe(201);
  const stepId = (await server.api("GET", `/api/v1/deployments/${r.json.id}`)).json.steps[0].id as string;
  return { dep: r.json.id, stepId };
}

describe("retention", () => {
  it("prunes ended, delivered deployments from steps/ and the journal after the retention period, never a running one; lastSeq stays", async () => {
    const home = await server.registerAgent(NAME);
    const agent = server.startAgent(NAME, home, ["--retention-days", String(RETENTION_DAYS)]);
    agents.push(agent);
    await server.waitAgentOnline(NAME);
    const steps = join(home, "steps");

    const quick = await deploy("echo quick > left-in-work.txt; echo quick");
    expect((await server.waitDeployment(quick.dep)).status).toBe("succeeded");
    const quickWork = join(home, "work", quick.dep);
    expect(existsSync(join(quickWork, "left-in-work.txt"))).toBe(true);
    const slow = await deploy("sleep 12; echo slow");
    const slowDir = stepPaths(steps, slow.stepId).dir;
    const slowPid = await waitFor(async () => readPid(join(slowDir, "pid")), 20_000, "the slow step's pid");
    stepGroups.push(slowPid);
    expect(existsSync(stepPaths(steps, quick.stepId).dir)).toBe(true);

    // The quick one goes once 4.3 s have passed since it ended; the slow one, still running, stays.
    await waitFor(async () => !existsSync(stepPaths(steps, quick.stepId).dir), 20_000, "the quick step's folder to be pruned");
    expect(existsSync(quickWork)).toBe(false); // its deployment's work folder with it
    expect(existsSync(slowDir)).toBe(true);
    // Folders go first, rows right after (a crash in between leaves rows to find again).
    await waitFor(async () => (await journalRows(home)).commands === 1, 5_000, "the quick command's rows to be pruned");
    expect(await journalRows(home)).toMatchObject({ commands: 1, steps: 1, lastSeq: 2 });
    expect(readFileSync(agent.logFile, "utf8")).toMatch(/\[worker\/prune\] pruned 1 command\(s\) \(1 step folder\(s\)\) that ended more than 0\.00005 day\(s\) ago and were fully delivered/);

    expect((await server.waitDeployment(slow.dep, 30_000)).status).toBe("succeeded");
    await waitFor(async () => !existsSync(slowDir), 20_000, "the slow step's folder to be pruned");
    await waitFor(async () => (await journalRows(home)).commands === 0, 10_000, "the journal rows to be pruned");
    expect(await journalRows(home)).toEqual({ commands: 0, steps: 0, outbox: 0, lastSeq: 2 });
    // What the server shows is untouched.
    expect((await server.api("GET", `/api/v1/deployments/${quick.dep}/steps/${quick.stepId}/log`)).text).toBe("quick\n");

    // Without the flag, settings.json's retentionDays applies.
    await agent.stop();
    const settingsPath = join(home, "settings.json");
    writeFileSync(settingsPath, JSON.stringify({ ...JSON.parse(readFileSync(settingsPath, "utf8")), retentionDays: 0.5 }), { mode: 0o600 });
    const again = server.startAgent(NAME, home);
    agents.push(again);
    await waitFor(async () => /\[worker\] started .*ended deployments kept 0\.5 day\(s\)\)/.test(readFileSync(again.logFile, "utf8").split("monitor started").at(-1)!), 20_000, "the worker to start with retentionDays from settings.json");
  });
});
