// What the server asks of the agent itself (docs/agent-lifecycle.md §Config, §Restart),
// as the journal holds it: the newest config — concurrency and log level, over the
// command line and settings.json — and the newest restart request. Applied at start
// and after every store of commands; the applied config is told to the server (hello,
// and a `status` message after a change).
import type { AgentConfig, LogLevel } from "../../schema/api.ts";
import { sameConfig } from "../../schema/agent-config.ts";
import { setLogLevel, type Logger } from "../log.ts";
import type { Journal, UpgradeRequest } from "./journal.ts";

export type ControlsDeps = {
  journal: Journal;
  defaults: { concurrency: number; logLevel: LogLevel }; // without a config from the server
  setConcurrency: (n: number) => void;
  tellServer: (applied: AgentConfig) => void;
  onRestart: () => void; // the server asked for a new worker
  onUpgrade: (req: UpgradeRequest) => void; // an upgrade request not yet taken care of
  log: Logger;
};

export class Controls {
  readonly #deps: ControlsDeps;
  #applied: Required<AgentConfig>;
  #restartSeen = 0;

  constructor(deps: ControlsDeps) {
    this.#deps = deps;
    this.#applied = { ...deps.defaults };
  }

  get applied(): AgentConfig {
    return { ...this.#applied };
  }

  // At start: a restart requested before now is what this worker's start satisfies.
  async start(): Promise<void> {
    const { config, restartSeq, upgrade } = await this.#deps.journal.controls();
    this.#restartSeen = restartSeq;
    this.#apply(config, false);
    if (upgrade) this.#deps.onUpgrade(upgrade); // one this worker's predecessor did not finish
  }

  async check(): Promise<void> {
    const { config, restartSeq, upgrade } = await this.#deps.journal.controls();
    this.#apply(config, true);
    if (upgrade) this.#deps.onUpgrade(upgrade);
    if (restartSeq > this.#restartSeen) {
      this.#restartSeen = restartSeq;
      this.#deps.log.info("the server asked for a restart: handing over to a new worker (running steps keep running)");
      this.#deps.onRestart();
    }
  }

  #apply(config: AgentConfig | null, tell: boolean): void {
    const next = { concurrency: config?.concurrency ?? this.#deps.defaults.concurrency, logLevel: config?.logLevel ?? this.#deps.defaults.logLevel };
    if (sameConfig(next, this.#applied) && tell) return;
    const before = this.#applied;
    this.#applied = next;
    if (next.concurrency !== before.concurrency || !tell) this.#deps.setConcurrency(next.concurrency);
    setLogLevel(next.logLevel);
    if (tell) {
      this.#deps.log.info(`config applied: up to ${next.concurrency} concurrent deployments, log level ${next.logLevel}`);
      this.#deps.tellServer(this.applied);
    }
  }
}
