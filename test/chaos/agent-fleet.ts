// The chaos run's agents as processes: registered behind the agent fault proxy,
// launched (and relaunched after a fault or the heal), stopped for the final
// collection, killed together with their steps' process groups on cleanup.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Proc, TestServer } from "../support/local-server.ts";
import { readPid } from "../support/pids.ts";

export type AgentState = { name: string; id: string; home: string; proc: Proc | null; down: boolean; restartTimer: NodeJS.Timeout | null; starts: number };

export class AgentFleet {
  readonly agents: AgentState[] = [];
  readonly #server: TestServer;
  readonly #log: (msg: string) => void;
  readonly #anomaly: (what: string) => void;
  // True while the run stops agents on purpose (heal, cleanup): an exit then is no anomaly.
  readonly #quiet: () => boolean;

  constructor(opts: { server: TestServer; log: (msg: string) => void; anomaly: (what: string) => void; quiet: () => boolean }) {
    this.#server = opts.server;
    this.#log = opts.log;
    this.#anomaly = opts.anomaly;
    this.#quiet = opts.quiet;
  }

  async start(count: number, runId: string, serverUrl: string): Promise<void> {
    for (let i = 0; i < count; i++) {
      const name = `chaos-${runId}-a${i + 1}`;
      const home = await this.#server.registerAgent(name, serverUrl);
      const settings = JSON.parse(readFileSync(join(home, "settings.json"), "utf8"));
      this.agents.push({ name, id: settings.agentId, home, proc: null, down: false, restartTimer: null, starts: 0 });
    }
    for (const a of this.agents) this.launch(a);
    for (const a of this.agents) {
      // presence needs the WebSocket; work goes on without it (long-poll), so a miss is reported, not fatal
      await this.#server.waitAgentOnline(a.name, 30_000).catch((e) => this.#anomaly(`agent ${a.name} not online 30 s after start: ${e.message}`));
    }
    this.#log(`${this.agents.length} agents started: ${this.agents.map((a) => a.name).join(", ")}`);
  }

  launch(a: AgentState): void {
    a.proc = this.#server.startAgent(a.name, a.home);
    a.down = false;
    a.starts++;
    const proc = a.proc;
    void proc.exited.then((code) => {
      if (a.proc === proc && !a.down && !this.#quiet()) this.#anomaly(`agent ${a.name} monitor (pid ${proc.pid}) exited by itself with ${code}`);
    });
  }

  // At the heal: a pending restart is dropped, every agent down or exited runs again now.
  relaunchStopped(): void {
    for (const a of this.agents) {
      if (a.restartTimer) clearTimeout(a.restartTimer);
      a.restartTimer = null;
      const exited = !a.proc || a.proc.child.exitCode !== null || a.proc.child.signalCode !== null;
      if (a.down || exited) this.launch(a);
    }
  }

  // The agents' end state: stopped, then their journals are read.
  async stopAll(): Promise<void> {
    for (const a of this.agents) {
      a.down = true; // stopped on purpose: not an anomaly
      await a.proc?.stop();
    }
  }

  async killAll(): Promise<void> {
    for (const a of this.agents) {
      if (a.restartTimer) clearTimeout(a.restartTimer);
      await a.proc?.stop("SIGKILL").catch((e) => this.#log(`cleanup: stopping agent ${a.name} failed: ${e instanceof Error ? e.message : e}`));
      killStepGroups(a.home);
    }
  }
}

export function killStepGroups(home: string): void {
  const steps = join(home, "steps");
  if (!existsSync(steps)) return;
  for (const d of readdirSync(steps)) {
    const pid = readPid(join(steps, d, "pid"));
    if (pid && pid > 1) { // never kill(-1): that would signal every process we may signal
      try {
        process.kill(-pid, "SIGKILL");
      } catch { /* ended */ }
    }
  }
}
