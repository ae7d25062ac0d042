// An upgrade as one worker lives it (docs/agent-lifecycle.md §Upgrade):
// - asked for by a command: runUpgrade downloads, verifies and unpacks, then this
//   worker hands the switch to the monitor and stops (EXIT_UPGRADE);
// - started by the monitor as the new version on trial (OUTPOST_UPGRADE_TO): once it
//   has connected, resynced and had a heartbeat answered it tells the monitor it is
//   healthy and the server that the upgrade succeeded;
// - started again after the monitor rolled back (OUTPOST_UPGRADE_ROLLED_BACK): it tells
//   the server why, once connected.
// States go to the server in `status` messages; one that finds no connection is sent
// when the channel is up again.
import type { UpgradeReport } from "../../schema/agent-api.ts";
import type { Logger } from "../log.ts";
import type { ApiClient } from "./api-client.ts";
import type { Journal, UpgradeRequest } from "./journal.ts";
import { runUpgrade } from "./upgrader.ts";

import { HEALTHY_MESSAGE, ROLLED_BACK_ENV, UPGRADE_TO_ENV } from "../upgrade-protocol.ts";

export type UpgradeFlowDeps = {
  home: string;
  api: ApiClient;
  journal: Journal;
  send: (m: { type: "status"; upgrade: UpgradeReport }) => boolean;
  switchTo: (version: string) => void; // stop this worker for the switch
  runningVersion: string; // AGENT_VERSION of this worker
  log: Logger;
  env?: NodeJS.ProcessEnv;
};

export function upgradeFlow(deps: UpgradeFlowDeps) {
  const env = deps.env ?? process.env;
  const onTrial = env[UPGRADE_TO_ENV] ?? null;
  const rolledBack = rolledBackReport(env[ROLLED_BACK_ENV]);
  // The state to tell the server when the channel is (next) up, and, for an end state,
  // the seq of its request: once told, the journal says so and no worker tells it again.
  let pending: { report: UpgradeReport; seq: number | null } | null = null;
  let running = false;
  let resynced = false;
  let healthy = false;
  let untoldSeq: number | null = null;

  const tell = (report: UpgradeReport, seq: number | null = null) => {
    pending = { report, seq };
    if (!deps.send({ type: "status", upgrade: report })) return;
    pending = null;
    if (seq !== null) deps.journal.markUpgradeTold(seq).catch((e) => deps.log.error("cannot record that the upgrade's end was told", e));
  };

  return {
    // At start: an upgrade that ended without the server being told — this worker is on
    // trial, or came back after a rollback, or the agent restarted in the middle of a
    // switch (then the version it runs says how it went).
    async init(): Promise<void> {
      const { untold } = await deps.journal.controls();
      untoldSeq = untold?.seq ?? null;
      // On trial: the states before the switch may not have reached the server.
      if (onTrial !== null) return tell({ version: onTrial, state: "switching", reason: null });
      if (untold === null) return;
      if (rolledBack) return tell(rolledBack, untold.seq);
      const done = deps.runningVersion === untold.version;
      tell(
        done
          ? { version: untold.version, state: "succeeded", reason: null }
          : { version: untold.version, state: "rolled-back", reason: `the switch did not complete (the agent restarted during it); running ${deps.runningVersion}` },
        untold.seq,
      );
    },
    start(req: UpgradeRequest): void {
      if (running) return;
      running = true;
      const done = (outcome: "handed-over" | "failed") => {
        if (outcome === "failed") running = false;
      };
      runUpgrade(
        {
          home: deps.home,
          api: deps.api,
          report: (r) => tell(r, r.state === "failed" ? req.seq : null),
          markHandled: (seq) => deps.journal.markUpgradeHandled(seq),
          handOver: (sw) => {
            if (typeof process.send !== "function" || !process.connected) return false;
            process.send(sw, undefined, {}, () => deps.switchTo(sw.version)); // stop once the monitor has the message
            return true;
          },
          log: deps.log,
        },
        req,
      ).then(done, (e) => {
        deps.log.error(`upgrade to ${req.version} stopped on an error; the next worker tries again`, e);
        running = false;
      });
    },
    channelUp(): void {
      if (pending) tell(pending.report, pending.seq);
    },
    resynced(): void {
      resynced = true;
    },
    heartbeatAnswered(): void {
      if (onTrial === null || healthy || !resynced) return;
      healthy = true;
      deps.log.info(`version ${onTrial} is healthy (connected, resynced, heartbeat answered)`);
      process.send?.(HEALTHY_MESSAGE);
      tell({ version: onTrial, state: "succeeded", reason: null }, untoldSeq);
    },
  };
}

function rolledBackReport(raw: string | undefined): UpgradeReport | null {
  if (!raw) return null;
  try {
    const v = JSON.parse(raw) as { version?: unknown; reason?: unknown };
    if (typeof v.version !== "string") return null;
    return { version: v.version, state: "rolled-back", reason: typeof v.reason === "string" ? v.reason.slice(0, 500) : null };
  } catch {
    return null;
  }
}
