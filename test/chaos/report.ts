// The chaos suite's report: figures as a table, then each check with its details.
import type { Check, Figures } from "./checks.ts";
import type { RunData } from "./orchestrator.ts";
import { FAULT_KINDS } from "./schedule.ts";

function table(rows: [string, string][]): string {
  const w = Math.max(...rows.map(([k]) => k.length));
  const v = Math.max(...rows.map(([, x]) => x.length));
  const line = `+${"-".repeat(w + 2)}+${"-".repeat(v + 2)}+`;
  return [line, ...rows.map(([k, x]) => `| ${k.padEnd(w)} | ${x.padStart(v)} |`), line].join("\n");
}

export function renderReport(d: RunData, checks: Check[], f: Figures): string {
  const rows: [string, string][] = [
    ["configuration", `${d.cfg.name} (seed ${d.cfg.seed})`],
    ["agents", String(f.agents)],
    ["deployments", String(f.deployments)],
    ["steps", String(f.steps)],
  ];
  let total = 0;
  for (const k of FAULT_KINDS) {
    const t = d.faults[k];
    total += t.injected;
    rows.push([`faults: ${k}`, `${t.injected}${t.notInjected ? ` (+${t.notInjected} not injected)` : ""}`]);
  }
  rows.push(["faults: total injected", String(total)]);
  // What the agents run at the end and how their last upgrade went (GET /api/v1/agents/:id).
  const agents = [...d.channels.values()].map((c) => c.json as { version?: string; upgrade?: { version: string; state: string } | null } | undefined);
  rows.push(["agents' versions at the end / last upgrade states", `${agents.map((a) => a?.version ?? "?").join(", ")} / ${agents.map((a) => (a?.upgrade ? `${a.upgrade.state} (${a.upgrade.version})` : "none")).join(", ")}`]);
  rows.push(["proxy: connections cut / refused / WS rejected", `${d.proxyStats.connectionsCut} / ${d.proxyStats.refused} / ${d.proxyStats.wsRejected}`]);
  rows.push(["proxy: half-opened / stalled connections", `${d.proxyStats.halfOpened} / ${d.proxyStats.stalledConnections}`]);
  rows.push(["API proxy: connections cut", String(d.apiProxyStats.connectionsCut)]);
  rows.push(["POSTs retried / repeated after success", `${d.submissions.filter((s) => s.attempts > 1 + (s.replayed ? 1 : 0)).length} / ${d.submissions.filter((s) => s.replayed).length}`]);
  rows.push(["lost", String(f.lost)]);
  rows.push(["duplicated", String(f.duplicated)]);
  rows.push(["ran though skipped / interrupted", String(f.ranWhenNotExpected)]);
  rows.push(["stuck", String(f.stuck)]);
  rows.push(["unknown executions", String(f.unknownExecutions)]);
  rows.push(["bad results in D1", String(f.badResults)]);
  rows.push(["applied twice", String(f.appliedTwice)]);
  rows.push(["results first seen terminal during the run / compared with D1", `${f.sampledDuringRun} / ${f.comparedWithD1}`]);
  rows.push(["multi-chunk logs checked (of expected)", `${f.multiChunkLogs} (of ${f.multiChunkPlanned})`]);
  rows.push(["log bytes checked / ranges read / bad logs", `${f.logBytesChecked} / ${f.logRangesRead} / ${f.badLogs}`]);
  rows.push(["timeouts (planned / as planned)", `${f.timeoutsPlanned} / ${f.timeoutsAsPlanned}`]);
  rows.push(["skipped after a failed step", String(f.skippedAfterFailure)]);
  rows.push(["agent-lost expired (of runs) / late results (of planned)", `${f.agentLostExpired} (of ${f.agentLostRuns}) / ${f.lateResults} (of ${f.lateResultsPlanned})`]);
  rows.push(["interrupted before spawn (not run) / bad interrupted", `${f.interruptedNotRun} / ${f.badInterrupted}`]);
  rows.push(["last fault injected / all healed", `+${((d.lastFaultAt - d.startedAt) / 1000).toFixed(1)} s / +${((d.healedAt - d.startedAt) / 1000).toFixed(1)} s`]);
  rows.push(["time to settle after the last fault (from heal)", f.settleSeconds === null ? `not settled in ${d.cfg.settleSeconds} s` : `${f.settleSeconds.toFixed(1)} s`]);
  rows.push(["total duration", `${f.totalSeconds.toFixed(1)} s`]);
  const out = ["", "Chaos figures", table(rows), "", "Checks"];
  for (const c of checks) {
    out.push(`  ${c.pass ? "PASS" : "FAIL"}  ${c.name}`);
    for (const line of c.details) out.push(`        ${line}`);
  }
  const failed = checks.filter((c) => !c.pass).length;
  out.push("", failed === 0 ? "chaos: all checks passed" : `chaos: ${failed} check(s) FAILED (work dir ${d.work}: server.log, agent-*.log, agents/*/journal.db)`);
  return out.join("\n");
}
