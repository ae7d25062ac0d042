// docs/protocol.md §Revoke with real processes: once the server says the agent is
// revoked (channel closed 4003, or a 401 with code "agent-revoked"), the worker
// exits with EXIT_REVOKED and the monitor stops instead of restarting it,
// non-zero, saying why. The step that was running is canceled on the server and
// left alone here. A 401 that does not say "revoked" (an unknown credential) is
// retried: the agent keeps running.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EXIT_REVOKED, REVOKED_MESSAGE } from "../../agent/errors.ts";
import { stepPaths } from "../../agent/steps/shell-step.ts";
import { sleep, TestServer, waitFor, type Proc } from "../support/local-server.ts";
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

const agentId = (home: string): string => JSON.parse(readFileSync(join(home, "settings.json"), "utf8")).agentId;
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

// The exit code, or "still running" if it has not exited within `ms`.
const exitWithin = (p: Proc, ms: number) => Promise.race([p.exited, sleep(ms).then(() => "still running" as const)]);

describe("§Revoke", () => {
  it("the worker and the monitor stop for good; the running step is canceled on the server and its process left alone", async () => {
    const name = "revoke-running";
    const home = await server.registerAgent(name);
    const agent = server.startAgent(name, home);
    agents.push(agent);
    await server.waitAgentOnline(name);
    const go = join(server.work, "go-revoke");
    const out = join(server.work, "out-revoke");
    const r = await server.api("POST", "/api/v1/deployments", {
      agents: [name],
      steps: [{ name: "wait", type: "shell", command: `while [ ! -e ${go} ]; do sleep 0.1; done; echo finished > ${out}` }],
    });
    expect(r.status, r.text).toBe(201);
    const dep = r.json.id as string;
    const stepId = await waitFor(async () => {
      const s = (await server.api("GET", `/api/v1/deployments/${dep}`)).json?.steps?.[0];
      return s?.status === "running" ? (s.id as string) : null;
    }, 30_000, "the step running");
    const stepPid = await waitFor(async () => readPid(stepPaths(join(home, "steps"), stepId).pidFile), 10_000, "the step's pid file");
    stepGroups.push(stepPid);
    const worker = readPid(join(home, "worker.pid"))!;

    const del = await server.api("DELETE", `/api/v1/agents/${agentId(home)}`);
    expect(del.status, del.text).toBe(200);
    // A generous bound that only catches a hang; how fast a revoke lands is the bench's to measure.
    expect(await exitWithin(agent, 10_000)).toBe(EXIT_REVOKED);
    expect(alive(worker)).toBe(false);
    expect(existsSync(join(home, "worker.pid"))).toBe(false);
    expect(existsSync(join(home, "monitor.pid"))).toBe(false);
    const log = readFileSync(agent.logFile, "utf8");
    // Normally the channel's 4003 close; a request refused with the revoked 401 first says the same.
    expect(log).toMatch(new RegExp(`outpost-agent\\[worker\\] ERROR ${escape(REVOKED_MESSAGE)} \\((channel closed by the server: 4003 agent revoked|.*HTTP 401)`));
    expect(log).toMatch(new RegExp(`outpost-agent\\[monitor\\] ERROR ${escape(REVOKED_MESSAGE)}; worker ${worker} stopped and is not restarted`));
    expect(log.match(/worker started, pid/g)).toHaveLength(1); // never restarted

    // The server ended the work; the step's process is not touched and its late end reported by no one.
    const view = await server.waitDeployment(dep, 10_000);
    expect(view.steps[0]).toMatchObject({ status: "canceled", reason: "agent revoked" });
    expect(alive(stepPid)).toBe(true);
    writeFileSync(go, "");
    await waitFor(async () => existsSync(out) && !alive(stepPid), 10_000, "the step to finish on its own");
    expect((await server.api("GET", `/api/v1/deployments/${dep}`)).json.steps[0]).toMatchObject({ status: "canceled", reason: "agent revoked" });
  });

  it("a revoked agent started again is refused (401, code agent-revoked) and stops at once, non-zero", async () => {
    const name = "revoke-restart";
    const home = await server.registerAgent(name);
    const del = await server.api("DELETE", `/api/v1/agents/${agentId(home)}`);
    expect(del.status, del.text).toBe(200);
    const agent = server.startAgent(name, home);
    agents.push(agent);
    expect(await exitWithin(agent, 15_000)).toBe(EXIT_REVOKED);
    const log = readFileSync(agent.logFile, "utf8");
    expect(log).toMatch(new RegExp(`\\[worker\\] ERROR ${escape(REVOKED_MESSAGE)} \\(.*(401|4003)`));
    expect(log).toMatch(new RegExp(`\\[monitor\\] ERROR ${escape(REVOKED_MESSAGE)}`));
    expect(existsSync(join(home, "monitor.pid"))).toBe(false);
  });

  it("a credential the server does not know (a 401 without the revoked code) is retried: the agent keeps running and says the server refused it", async () => {
    const name = "unknown-credential";
    const home = await server.registerAgent(name);
    writeFileSync(join(home, "credential.json"), JSON.stringify({ credential: "not-a-credential-this-server-knows" }) + "\n", { mode: 0o600 });
    const agent = server.startAgent(name, home);
    agents.push(agent);
    expect(await exitWithin(agent, 8_000)).toBe("still running");
    const log = readFileSync(agent.logFile, "utf8");
    expect(log).toMatch(/\[worker\/pull\] WARN pull after=0 failed; retrying in \d+ ms: .*HTTP 401.*refused this agent's credential without saying it is revoked/);
    expect(log).toMatch(/\[worker\/channel\] WARN channel error: the server refused this agent's credential on the channel \(HTTP 401, not a revocation\)/);
    expect(log).not.toContain(REVOKED_MESSAGE);
    expect(log.match(/worker started, pid/g)).toHaveLength(1);
  });
});
