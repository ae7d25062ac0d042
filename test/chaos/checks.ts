// The chaos suite's checks: each a pass/fail with details, computed from what the run collected.
import { channelSynced } from "./collect.ts";
import type { RunData } from "./orchestrator.ts";
import { FAULT_KINDS } from "./schedule.ts";

export type Check = { name: string; pass: boolean; details: string[] };
export type Figures = {
  steps: number;
  deployments: number;
  agents: number;
  lost: number;
  duplicated: number;
  stuck: number;
  unknownExecutions: number;
  badResults: number;
  settleSeconds: number | null;
  totalSeconds: number;
};

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const MAX_DETAILS = 15;

function cap(lines: string[]): string[] {
  return lines.length <= MAX_DETAILS ? lines : [...lines.slice(0, MAX_DETAILS), `… and ${lines.length - MAX_DETAILS} more`];
}

export function evaluate(d: RunData): { checks: Check[]; figures: Figures } {
  const checks: Check[] = [];
  const subs = d.submissions.filter((s) => s.id);
  const views = subs.map((s) => d.views.get(s.id!)).filter(Boolean);
  const expectedSteps = new Map<string, { dep: string; agent: string }>();
  for (const v of views) for (const s of v.steps ?? []) expectedSteps.set(s.id, { dep: v.id, agent: s.agent });

  // 1. every step executed exactly once
  const lost: string[] = [];
  const dup: string[] = [];
  for (const [id, where] of expectedSteps) {
    const n = d.executions.get(id) ?? 0;
    if (n === 0) lost.push(`step ${id} (deployment ${where.dep}, agent ${where.agent}) never ran`);
    if (n > 1) dup.push(`step ${id} (deployment ${where.dep}, agent ${where.agent}) ran ${n} times`);
  }
  const unknown = [...d.executions.entries()].filter(([id]) => !expectedSteps.has(id)).map(([id, n]) => `unknown step id ${id} ran ${n} time(s) (a deployment nobody asked for?)`);
  const missingViews = subs.filter((s) => !d.views.has(s.id!)).map((s) => `deployment ${s.id} (${s.key}) could not be read`);
  checks.push({
    name: "every step executed exactly once",
    pass: lost.length === 0 && dup.length === 0 && unknown.length === 0 && missingViews.length === 0 && expectedSteps.size > 0,
    details: cap([`${expectedSteps.size} steps expected, ${[...d.executions.values()].reduce((a, b) => a + b, 0)} executions counted`, ...lost, ...dup, ...unknown, ...missingViews]),
  });

  // 2. every step result recorded once in D1: succeeded, exit 0, log exactly out-<id>\n
  const bad: string[] = [];
  for (const v of views) {
    for (const s of v.steps ?? []) {
      const log = d.logs.get(s.id);
      const want = `out-${s.id}\n`;
      const problems: string[] = [];
      if (s.status !== "succeeded") problems.push(`status ${s.status}${s.reason ? ` (${s.reason})` : ""}`);
      if (s.exitCode !== 0) problems.push(`exitCode ${s.exitCode}`);
      if (log === undefined || log === null) problems.push("log unreadable");
      else if (log !== want) problems.push(`log ${JSON.stringify(log.slice(0, 120))}${log.length > 120 ? "…" : ""} (${log.length} bytes, want ${want.length})`);
      if (problems.length) bad.push(`step ${s.id} (deployment ${v.id}, ${s.agent}): ${problems.join("; ")}`);
    }
  }
  checks.push({ name: "every step result recorded once in D1 (succeeded, exit 0, log = out-<id>)", pass: bad.length === 0 && views.length > 0, details: cap(bad) });

  // 3. every deployment ended, succeeded
  const stuck = views.filter((v) => !TERMINAL.has(v.status));
  const notOk = views.filter((v) => TERMINAL.has(v.status) && v.status !== "succeeded");
  checks.push({
    name: "every deployment ended (succeeded)",
    pass: stuck.length === 0 && notOk.length === 0 && missingViews.length === 0,
    details: cap([
      ...stuck.map((v) => `STUCK deployment ${v.id} ${v.status}: ${(v.steps ?? []).map((s: any) => `${s.agent}/${s.name}=${s.status}`).join(" ")}`),
      ...notOk.map((v) => `deployment ${v.id} ended ${v.status}: ${(v.steps ?? []).map((s: any) => `${s.name}=${s.status}${s.reason ? `(${s.reason})` : ""}`).join(" ")}`),
      ...missingViews,
    ]),
  });

  // 4. exactly as many deployments as requested (Idempotency-Key)
  const idem: string[] = [];
  const failedSubs = d.submissions.filter((s) => !s.id);
  for (const s of failedSubs) idem.push(`${s.key}: never created: ${s.error} after ${s.attempts} attempt(s)`);
  for (const s of d.submissions) {
    if (s.replayed && s.replayed.id !== s.id) idem.push(`${s.key}: repeated POST with the same key answered ${s.replayed.status} id ${s.replayed.id} (first: ${s.id})${s.replayed.error ? ` ${s.replayed.error}` : ""}`);
  }
  if ("error" in d.d1Deployments) idem.push(`cannot count deployments in D1: ${d.d1Deployments.error}`);
  else {
    const byName = d.d1Deployments.byName;
    const total = [...byName.values()].reduce((a, b) => a + b, 0);
    if (total !== d.cfg.deployments) idem.push(`D1 holds ${total} deployments of this run, ${d.cfg.deployments} were requested`);
    for (const [name, n] of byName) if (n > 1) idem.push(`${name}: ${n} deployments in D1`);
  }
  const retried = d.submissions.filter((s) => s.attempts > 1 + (s.replayed ? 1 : 0)).length;
  checks.push({
    name: "exactly as many deployments as requested (retried POSTs with the same Idempotency-Key)",
    pass: idem.length === 0,
    details: cap([`${d.cfg.deployments} requested, ${retried} needed retries, ${d.submissions.filter((s) => s.replayed).length} repeated after success`, ...idem]),
  });

  // 5. journal and ledger agree at the end
  const jl: string[] = [];
  for (const a of d.agents) {
    const ch = d.channels.get(a.name);
    const j = d.journals.get(a.name);
    const channel = ch?.status === 200 ? ch.json?.channel : undefined;
    if (!ch || ch.status !== 200) jl.push(`${a.name}: GET /api/v1/agents/${a.id} answered ${ch?.status} ${ch?.text?.slice(0, 120) ?? ""}`);
    else if (!channel) jl.push(`${a.name}: GET /api/v1/agents/${a.id} has no "channel" (${ch.text.slice(0, 160)})`);
    else if (!channelSynced(channel)) jl.push(`${a.name}: ledger not settled: ${JSON.stringify(channel)} (want acked == head, openCommands 0, pendingProjections 0)`);
    if (!j) jl.push(`${a.name}: journal not read`);
    else if ("error" in j) jl.push(`${a.name}: journal unreadable: ${j.error}`);
    else {
      if (j.outbox !== 0) jl.push(`${a.name}: journal outbox holds ${j.outbox} report(s)`);
      const notDone = j.commands.filter((c) => c.state !== "done");
      if (notDone.length) jl.push(`${a.name}: ${notDone.length} journal command(s) not done: ${notDone.slice(0, 5).map((c) => `seq ${c.seq} ${c.state}`).join(", ")}`);
      if (j.runningSteps.length) jl.push(`${a.name}: journal steps still pending/running: ${j.runningSteps.slice(0, 5).join(", ")}`);
      if (channel && j.lastSeq !== channel.head) jl.push(`${a.name}: journal lastSeq ${j.lastSeq} != ledger head ${channel.head}`);
      const seqs = j.commands.map((c) => c.seq);
      if (seqs.some((s, i) => s !== i + 1)) jl.push(`${a.name}: journal command seqs not dense 1..${seqs.length}`);
      if (j.lastSeq !== (seqs.at(-1) ?? 0)) jl.push(`${a.name}: journal lastSeq ${j.lastSeq} but last stored command seq ${seqs.at(-1) ?? 0}`);
    }
  }
  checks.push({ name: "journal and ledger agree at the end", pass: jl.length === 0, details: cap(jl) });

  // 6. every fault kind injected (at least min-per-kind times)
  const fk: string[] = [];
  for (const k of FAULT_KINDS) {
    const t = d.faults[k];
    if (t.injected < d.cfg.minPerKind) fk.push(`${k}: injected ${t.injected} time(s), want ≥ ${d.cfg.minPerKind}${t.reasons.length ? `; not injected: ${t.reasons[0]}` : ""}`);
  }
  checks.push({ name: `every fault kind injected (≥ ${d.cfg.minPerKind} each)`, pass: fk.length === 0, details: cap(fk) });

  // 7. nothing died by itself
  checks.push({ name: "no anomalies (agents online at start, no process exited by itself)", pass: d.anomalies.length === 0, details: cap(d.anomalies.map((a) => `+${((a.at - d.startedAt) / 1000).toFixed(1)}s ${a.what}`)) });

  const figures: Figures = {
    steps: expectedSteps.size,
    deployments: d.submissions.length,
    agents: d.agents.length,
    lost: lost.length,
    duplicated: dup.length,
    stuck: stuck.length + missingViews.length,
    unknownExecutions: unknown.length,
    badResults: bad.length,
    settleSeconds: d.settledAt === null ? null : (d.settledAt - d.healedAt) / 1000,
    totalSeconds: (d.endedAt - d.startedAt) / 1000,
  };
  return { checks, figures };
}
