// The agent-lost scenario (docs/protocol.md §Agent lost), run inside the fault phase:
// a deployment with a short agentLostAfterSeconds (plan.ts makeAgentLostPlan) goes to
// one agent; once its first step (a "gate" step, waiting for a file) runs there, the
// agent is stopped — SIGTERM, not killed: its step processes live on — for longer
// than the deadline, until the API shows every step of the deployment failed as
// "agent-lost". Then the gate opens and the agent runs again: it finishes the steps
// and delivers their real results, which D1 must record as late ("agent-lost; result
// arrived later…") while the deployment stays failed (checks.ts).
//
// While it runs, the agent is held (agent faults hit other agents) and, from the stop
// to the relaunch, so is the server (a restart would move the deadline back by at
// least a minute). The gate step's result can never arrive before the deadline, so
// every step's expectation is fixed when the deployment is planned.
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sleep } from "../support/local-server.ts";
import type { AgentFleet } from "./agent-fleet.ts";
import type { ApiClient } from "./api-client.ts";
import type { ChaosConfig } from "./config.ts";
import type { FaultInjector } from "./fault-injector.ts";
import type { ResultObserver } from "./observer.ts";
import { AGENT_LOST_REASON, type DeploymentPlan } from "./plan.ts";
import type { DeploymentSubmitter } from "./submissions.ts";

export type AgentLostRun = {
  key: string;
  agent: string;
  deploymentId: string | null;
  startedAt: number;
  stoppedAt: number | null; // the agent stopped
  lostSeenAt: number | null; // the API showed every step failed as agent-lost, the agent still stopped
  relaunchedAt: number | null;
  problems: string[]; // what kept the scenario from doing its part
};

const STEP_RUNNING_WITHIN_MS = 60_000;
const LOST_WITHIN_MS = 60_000;

type Options = {
  cfg: ChaosConfig;
  fleet: AgentFleet;
  injector: FaultInjector;
  submitter: DeploymentSubmitter;
  api: ApiClient;
  observer: ResultObserver;
  execDir: string;
  log: (msg: string) => void;
};

export class AgentLostScenarios {
  readonly runs: AgentLostRun[] = [];
  readonly #o: Options;

  constructor(opts: Options) {
    this.#o = opts;
  }

  // Spread over the first 70% of the fault phase, one after the other.
  async runAll(startedAt: number): Promise<void> {
    const plans = this.#o.submitter.lostPlans;
    const span = this.#o.cfg.faultSeconds * 1000 * 0.7;
    for (let k = 0; k < plans.length; k++) {
      const due = startedAt + (span * (k + 0.5)) / plans.length;
      if (Date.now() < due) await sleep(due - Date.now());
      await this.#run(plans[k], this.#o.cfg.deployments + k);
    }
  }

  async #run(plan: DeploymentPlan, index: number): Promise<void> {
    const { fleet, injector, submitter, api, observer, log } = this.#o;
    const agent = fleet.agents.find((a) => a.name === plan.agents[0])!;
    const run: AgentLostRun = { key: plan.key, agent: agent.name, deploymentId: null, startedAt: Date.now(), stoppedAt: null, lostSeenAt: null, relaunchedAt: null, problems: [] };
    this.runs.push(run);
    const note = (m: string) => log(`agent-lost ${plan.key}: ${m}`);
    injector.holdAgent(agent.name);
    let releaseServer: (() => void) | null = null;
    let stoppedByUs = false;
    try {
      // a monitor-kill from before the hold may have the agent down for a few seconds
      if (!(await until(() => !agent.down, 30_000))) return void run.problems.push(`agent ${agent.name} still down 30 s after the scenario began`);
      const sub = await submitter.submit(plan, index);
      run.deploymentId = sub.id;
      if (!sub.id) return void run.problems.push(`not created: ${sub.error}`);
      const view = await api.get(`/api/v1/deployments/${sub.id}`, 30_000).catch(() => null);
      const gate = view?.json?.steps?.find((s: any) => s.name === plan.steps[0].name);
      if (!gate) return void run.problems.push(`cannot read the deployment: ${view?.status} ${view?.text?.slice(0, 160)}`);
      if (!(await until(() => countedRun(this.#o.execDir, gate.id), STEP_RUNNING_WITHIN_MS))) {
        return void run.problems.push(`its first step did not start on ${agent.name} within ${STEP_RUNNING_WITHIN_MS / 1000} s`);
      }
      releaseServer = await injector.holdServer();
      agent.down = true; // stopped on purpose: not an anomaly
      stoppedByUs = true;
      await agent.proc?.stop(); // SIGTERM: the steps live on
      run.stoppedAt = Date.now();
      note(`agent ${agent.name} stopped (SIGTERM) with its first step running; waiting for the ${plan.agentLostAfterSeconds} s deadline`);
      const minStop = run.stoppedAt + plan.agentLostAfterSeconds * 1000 + 1_000; // stopped for longer than the deadline in any case
      let last: any = null;
      const lost = await until(async () => {
        const r = await api.http(api.base, "GET", `/api/v1/deployments/${sub.id}`, undefined, {}, 5_000).catch(() => null);
        if (r?.status !== 200) return false;
        last = r.json;
        observer.recordView(r.json, "agent-lost scenario");
        return Date.now() >= minStop && r.json.steps.every((s: any) => s.status === "failed" && s.reason === AGENT_LOST_REASON);
      }, LOST_WITHIN_MS, 300);
      if (lost) {
        run.lostSeenAt = Date.now();
        note(`every step failed as agent-lost ${((run.lostSeenAt - run.stoppedAt) / 1000).toFixed(1)} s after the stop`);
      } else {
        run.problems.push(
          `the steps were not all failed as agent-lost ${LOST_WITHIN_MS / 1000} s after stopping the agent (deadline ${plan.agentLostAfterSeconds} s): ` +
            `${last ? `${last.status}: ${last.steps.map((s: any) => `${s.name}=${s.status}${s.reason ? `(${s.reason})` : ""}`).join(" ")}` : "deployment unreadable"}`,
        );
      }
    } catch (e) {
      run.problems.push(`scenario error: ${e instanceof Error ? e.message : e}`);
    } finally {
      if (plan.gateFile) writeFileSync(plan.gateFile, "open\n");
      if (stoppedByUs && agent.down) {
        fleet.launch(agent);
        run.relaunchedAt = Date.now();
        note(`gate open, agent ${agent.name} running again`);
      }
      releaseServer?.();
      injector.releaseAgent(agent.name);
    }
  }
}

// Whether a step's id is in a count file: it has begun to run.
function countedRun(execDir: string, stepId: string): boolean {
  if (!existsSync(execDir)) return false;
  return readdirSync(execDir).some((f) => f.startsWith("executions-") && readFileSync(join(execDir, f), "utf8").includes(stepId));
}

async function until(fn: () => boolean | Promise<boolean>, ms: number, every = 200): Promise<boolean> {
  const t0 = Date.now();
  for (;;) {
    if (await fn()) return true;
    if (Date.now() - t0 > ms) return false;
    await sleep(every);
  }
}
