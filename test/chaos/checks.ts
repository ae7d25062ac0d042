// The chaos suite's checks: each a pass/fail with details, computed from what the run
// collected, against what each deployment was planned to end as (plan.ts).
//
// Outcomes are planned, with one exception accepted as it happens: a step with retry
// "never" whose worker was killed between journaling "started" and spawning it is
// reported `interrupted` and must not have run (0 executions); the agent's later steps
// are then `skipped` and the deployment fails. A "safe" step is re-run instead, so it
// runs once like any other. Every other deviation fails a check.
import { CHUNK_START_BYTES } from "../../agent/worker/log-uploader.ts";
import { channelSynced } from "./collect.ts";
import { findReapplications, reportedAfterEnd } from "./observer.ts";
import type { RunData } from "./orchestrator.ts";
import { expectedChain, expectedOutput, LATE_REASON, planOfStep, type DeploymentPlan, type StepExpectation, type StepPlan } from "./plan.ts";
import { FAULT_KINDS } from "./schedule.ts";

export type Check = { name: string; pass: boolean; details: string[] };
export type Figures = {
  steps: number;
  deployments: number;
  agents: number;
  lost: number;
  duplicated: number;
  ranWhenNotExpected: number;
  stuck: number;
  unknownExecutions: number;
  badResults: number;
  appliedTwice: number;
  sampledDuringRun: number; // steps whose result was first seen terminal while the run went on
  comparedWithD1: number;
  observerReads: number;
  multiChunkLogs: number; // logs of more than one upload chunk, read by ranges and byte-exact
  multiChunkPlanned: number;
  logBytesChecked: number;
  logRangesRead: number;
  badLogs: number;
  timeoutsPlanned: number;
  timeoutsAsPlanned: number;
  skippedAfterFailure: number;
  agentLostRuns: number;
  agentLostExpired: number;
  lateResults: number;
  lateResultsPlanned: number;
  interruptedNotRun: number;
  badInterrupted: number;
  settleSeconds: number | null;
  totalSeconds: number;
};

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const DURING_RUN = new Set(["poll", "settle", "agent-lost scenario"]);
const UPLOAD_CHUNK = CHUNK_START_BYTES; // the agent's first log upload chunk (later ones are multiples)
const MAX_DETAILS = 15;

function cap(lines: string[]): string[] {
  return lines.length <= MAX_DETAILS ? lines : [...lines.slice(0, MAX_DETAILS), `… and ${lines.length - MAX_DETAILS} more`];
}

type Category = "result" | "timeout" | "agent-lost" | "interrupted";

// One step as found, with its plan and what it had to end as.
type StepCase = {
  id: string;
  dep: string;
  agent: string;
  plan: DeploymentPlan;
  step: StepPlan;
  exp: StepExpectation;
  view: any;
  runs: number;
  category: Category;
  acceptedInterruption: boolean;
};

export function evaluate(d: RunData): { checks: Check[]; figures: Figures } {
  const checks: Check[] = [];
  const subs = d.submissions.filter((s) => s.id);
  const missingViews = subs.filter((s) => !d.views.has(s.id!)).map((s) => `deployment ${s.id} (${s.key}) could not be read`);
  const structural: string[] = []; // the deployment's steps do not match its plan
  const cases: StepCase[] = [];
  const depFailedByInterruption = new Set<string>();
  for (const sub of subs) {
    const v = d.views.get(sub.id!);
    if (!v) continue;
    const plan = sub.plan;
    const chain = expectedChain(plan);
    for (const agent of plan.agents) {
      const steps = (v.steps ?? []).filter((s: any) => s.agent === agent);
      if (steps.length !== plan.steps.length) {
        structural.push(`deployment ${v.id} (${plan.key}) has ${steps.length} step(s) on ${agent}, ${plan.steps.length} planned`);
        continue;
      }
      let interruptedAt: number | null = null;
      steps.forEach((s: any, i: number) => {
        const step = planOfStep(plan, s.name);
        if (!step || step.position !== i + 1) {
          structural.push(`deployment ${v.id} (${plan.key}): step ${i + 1} on ${agent} is named ${s.name}, planned ${plan.steps[i].name}`);
          return;
        }
        let exp = chain[i];
        let category: Category = plan.expect === "agent-lost" ? "agent-lost" : plan.expect === "timeout" && i + 1 >= plan.steps.findIndex((x) => x.kind === "timeout") + 1 ? "timeout" : "result";
        if (interruptedAt !== null) {
          exp = { status: "skipped", runs: 0, exitCode: null, reason: "none", log: "empty" };
          category = "interrupted";
        }
        const runs = d.executions.get(s.id) ?? 0;
        let accepted = false;
        if (s.status === "interrupted") {
          category = "interrupted";
          // the one accepted deviation: killed between "started" and the spawn, never run
          accepted = interruptedAt === null && step.retry === "never" && exp.status !== "skipped" && plan.expect !== "agent-lost" && runs === 0 && s.exitCode === null;
          if (accepted) {
            interruptedAt = i;
            depFailedByInterruption.add(v.id);
            exp = { status: "skipped", runs: 0, exitCode: null, reason: "none", log: "empty" }; // its runs and log: none
          }
        }
        cases.push({ id: s.id, dep: v.id, agent, plan, step, exp, view: s, runs, category, acceptedInterruption: accepted });
      });
    }
  }

  // 1. every step executed as planned: once; never when skipped or interrupted before the spawn
  const lost: string[] = [];
  const dup: string[] = [];
  const ranWhenNot: string[] = [];
  for (const c of cases) {
    const where = `step ${c.id} (${c.plan.key} ${c.agent}/${c.step.name}, ${c.view.status})`;
    if (c.exp.runs === 1 && c.runs === 0) lost.push(`${where} never ran`);
    if (c.runs > 1) dup.push(`${where} ran ${c.runs} times`);
    if (c.exp.runs === 0 && c.runs > 0) ranWhenNot.push(`${where} ran ${c.runs} time(s), should not have run (${c.acceptedInterruption ? "interrupted before the spawn" : "skipped"})`);
  }
  const known = new Set(cases.map((c) => c.id));
  const allViewSteps = new Set([...d.views.values()].flatMap((v) => (v.steps ?? []).map((s: any) => s.id)));
  const unknown = [...d.executions.entries()].filter(([id]) => !allViewSteps.has(id)).map(([id, n]) => `unknown step id ${id} ran ${n} time(s) (a deployment nobody asked for?)`);
  checks.push({
    name: "every step executed as planned (exactly once; never when skipped or interrupted before the spawn)",
    pass: lost.length + dup.length + ranWhenNot.length + unknown.length + missingViews.length + structural.length === 0 && known.size > 0,
    details: cap([
      `${known.size} steps, ${[...d.executions.values()].reduce((a, b) => a + b, 0)} executions counted, ${cases.filter((c) => c.exp.runs === 0).length} planned or accepted not to run`,
      ...lost, ...dup, ...ranWhenNot, ...unknown, ...missingViews, ...structural,
    ]),
  });

  // 2–5, 7: results as planned (status, exit code, reason), by category
  const problems: Record<Category, string[]> = { result: [], timeout: [], "agent-lost": [], interrupted: [] };
  for (const c of cases) {
    const s = c.view;
    const where = `step ${c.id} (${c.plan.key} ${c.agent}/${c.step.name}, retry ${c.step.retry})`;
    if (s.status === "interrupted") {
      if (c.acceptedInterruption) continue;
      const why =
        c.step.retry === "safe" ? "a retry \"safe\" step must be re-run, not reported interrupted"
        : c.plan.expect === "agent-lost" ? "planned to run to its end"
        : c.exp.status === "skipped" ? "planned to be skipped"
        : c.runs > 0 ? `it ran (${c.runs} execution(s)): only a step killed before its spawn may end interrupted`
        : `exit code ${s.exitCode}`;
      problems.interrupted.push(`${where}: interrupted (${s.reason}) — ${why}`);
      continue;
    }
    const bad: string[] = [];
    if (s.status !== c.exp.status) bad.push(`status ${s.status}, want ${c.exp.status}`);
    if (s.exitCode !== c.exp.exitCode) bad.push(`exitCode ${s.exitCode}, want ${c.exp.exitCode}`);
    const reason: string | null = s.reason ?? null;
    if (c.exp.status !== "skipped") {
      if (c.exp.reason === "none" && reason !== null) bad.push(`reason ${JSON.stringify(reason)}, want none`);
      if (c.exp.reason === "timeout" && !reason?.startsWith("timeout")) bad.push(`reason ${JSON.stringify(reason)}, want "timeout…"`);
      if (c.exp.reason === "late" && !reason?.startsWith(LATE_REASON)) bad.push(`reason ${JSON.stringify(reason)}, want "${LATE_REASON}…"`);
    }
    if (bad.length) problems[c.category].push(`${where}: ${bad.join("; ")}`);
  }
  checks.push({
    name: "every step result recorded as planned in D1 (succeeded, exit 0, no reason)",
    pass: problems.result.length === 0 && cases.length > 0,
    details: cap(problems.result),
  });

  // 3. logs: read by ranges, complete, byte for byte
  const badLogs: string[] = [];
  let multiChunk = 0;
  let logBytes = 0;
  let ranges = 0;
  const multiChunkPlanned = cases.filter((c) => c.exp.log === "output" && !c.acceptedInterruption && expectedOutput(c.step, c.id).length > UPLOAD_CHUNK).length;
  for (const c of cases) {
    const want = c.exp.log === "output" ? expectedOutput(c.step, c.id) : Buffer.alloc(0);
    const got = d.logs.get(c.id);
    const where = `step ${c.id} (${c.plan.key} ${c.agent}/${c.step.name}, ${c.view.status})`;
    if (!got) {
      badLogs.push(`${where}: log not read`);
      continue;
    }
    if ("error" in got) {
      badLogs.push(`${where}: log unreadable: ${got.error}`);
      continue;
    }
    ranges += got.ranges;
    const issues: string[] = [];
    if (!got.complete) issues.push("X-Log-Complete false");
    if (!got.bytes.equals(want)) issues.push(describeDifference(got.bytes, want));
    if (issues.length) badLogs.push(`${where}: ${issues.join("; ")}`);
    else {
      logBytes += want.length;
      if (want.length > UPLOAD_CHUNK) multiChunk++;
    }
  }
  checks.push({
    name: `every log complete and byte-exact (read by ${d.cfg.logRangeKiB} KiB ranges; ${multiChunk} of more than one upload chunk)`,
    pass: badLogs.length === 0 && (d.cfg.bigLogShare === 0 || multiChunk > 0),
    details: cap([
      `${cases.length} logs, ${logBytes} bytes in ${ranges} ranges; multi-chunk logs: ${multiChunk} checked of ${multiChunkPlanned} expected`,
      ...(d.cfg.bigLogShare > 0 && multiChunk === 0 ? ["no multi-chunk log was checked"] : []),
      ...badLogs,
    ]),
  });

  // 3b. plug-in steps: their declared output recorded (the secret they print is checked
  // masked by the log check above: their expected log holds "token ***")
  const pluginCases = cases.filter((c) => c.step.kind === "plugin" && c.view.status === "succeeded");
  const badOutputs = pluginCases.filter((c) => c.view.outputs?.step !== c.id).map((c) => `step ${c.id} (${c.plan.key} ${c.agent}/${c.step.name}): outputs ${JSON.stringify(c.view.outputs)}`);
  checks.push({
    name: "every plug-in step that succeeded recorded its output",
    pass: badOutputs.length === 0 && (d.cfg.pluginShare === 0 || pluginCases.length > 0),
    details: cap([`${pluginCases.length} plug-in steps succeeded`, ...badOutputs]),
  });

  // 4. step timeouts
  const timeoutCases = cases.filter((c) => c.step.kind === "timeout");
  const timeoutsOk = timeoutCases.filter((c) => c.view.status === "failed" && c.runs === 1 && (c.view.reason ?? "").startsWith("timeout")).length;
  const skippedAfterFailure = cases.filter((c) => c.exp.status === "skipped" && c.view.status === "skipped").length;
  checks.push({
    name: "step timeouts: failed \"timeout…\" after one run, the agent's later steps skipped",
    pass: problems.timeout.length === 0 && (d.cfg.timeoutShare === 0 || timeoutCases.length > 0),
    details: cap([
      `${timeoutCases.length} timeout step(s) planned, ${timeoutsOk} failed "timeout…" after one run, ` +
        `${timeoutCases.filter((c) => c.view.status === "interrupted" && c.acceptedInterruption).length} interrupted before the spawn; ${skippedAfterFailure} later step(s) skipped`,
      ...problems.timeout,
    ]),
  });

  // 5. agent-lost deadline expired, late results recorded, the deployment stayed failed
  const lostDetails: string[] = [];
  for (const r of d.agentLost) for (const p of r.problems) lostDetails.push(`${r.key} on ${r.agent}: ${p}`);
  const lostSubs = d.submissions.filter((s) => s.plan.expect === "agent-lost");
  for (const s of lostSubs) {
    if (!s.id) continue;
    const h = d.deploymentHistory.get(s.id);
    if (!h?.samples.some((x) => x.status === "failed")) lostDetails.push(`${s.key}: never seen failed`);
    if (!d.agentLost.some((r) => r.key === s.key && r.lostSeenAt !== null)) lostDetails.push(`${s.key}: the agent-lost deadline was not seen to expire while the agent was stopped`);
  }
  const lateCases = cases.filter((c) => c.plan.expect === "agent-lost");
  const lateOk = lateCases.filter((c) => (c.view.reason ?? "").startsWith(LATE_REASON) && c.view.status === c.exp.status && c.runs === 1).length;
  const expired = d.agentLost.filter((r) => r.lostSeenAt !== null).length;
  checks.push({
    name: "agent-lost: the deadline expired while the agent was stopped; its real results recorded late, the deployment stayed failed",
    pass: lostDetails.length === 0 && problems["agent-lost"].length === 0 && lostSubs.length === d.cfg.agentLostRuns && expired === d.cfg.agentLostRuns,
    details: cap([
      `${d.cfg.agentLostRuns} scenario(s), ${expired} deadline(s) seen expired; ${lateOk} of ${lateCases.length} step(s) with their real result recorded late` +
        d.agentLost.map((r) => ` [${r.agent}: stopped ${r.stoppedAt && r.relaunchedAt ? ((r.relaunchedAt - r.stoppedAt) / 1000).toFixed(1) : "?"} s, agent-lost after ${r.stoppedAt && r.lostSeenAt ? ((r.lostSeenAt - r.stoppedAt) / 1000).toFixed(1) : "?"} s]`).join(""),
      ...lostDetails,
      ...problems["agent-lost"],
    ]),
  });

  // 6. interrupted only before the spawn
  const accepted = cases.filter((c) => c.acceptedInterruption);
  const byId = new Map(cases.map((c) => [c.id, c]));
  const kills = d.stepStartKills.map((k) => {
    const c = byId.get(k.stepId);
    return `${k.delayMs} ms: ${c ? `${c.step.name} (retry ${c.step.retry}) ${c.view.status}, ran ${c.runs}×` : `step ${k.stepId}?`}`;
  });
  checks.push({
    name: "interrupted only where killed before the spawn (retry \"never\", not run; later steps skipped)",
    pass: problems.interrupted.length === 0,
    details: cap([
      `${accepted.length} step(s) interrupted before the spawn and not run${accepted.length ? `: ${accepted.slice(0, 5).map((c) => `${c.plan.key} ${c.agent}/${c.step.name}`).join(", ")}` : ""}`,
      ...(kills.length ? [`workers killed at a step's start, the step then: ${kills.join("; ")}`] : []),
      ...problems.interrupted,
    ]),
  });

  // 7. every deployment ended as planned
  const views = subs.map((s) => ({ sub: s, v: d.views.get(s.id!) })).filter((x) => x.v);
  const stuck = views.filter(({ v }) => !TERMINAL.has(v.status));
  const wrongEnd: string[] = [];
  for (const { sub, v } of views) {
    if (!TERMINAL.has(v.status)) continue;
    const want = sub.plan.expect !== "succeeded" || depFailedByInterruption.has(v.id) ? "failed" : "succeeded";
    if (v.status !== want) {
      wrongEnd.push(`deployment ${v.id} (${sub.key}, planned ${sub.plan.expect}) ended ${v.status}, want ${want}: ${(v.steps ?? []).map((s: any) => `${s.agent.slice(-2)}/${s.name}=${s.status}${s.reason ? `(${s.reason})` : ""}`).join(" ")}`);
    }
  }
  checks.push({
    name: "every deployment ended as planned (succeeded; failed where a timeout, agent-lost or an accepted interruption)",
    pass: stuck.length === 0 && wrongEnd.length === 0 && missingViews.length === 0,
    details: cap([
      ...stuck.map(({ v }) => `STUCK deployment ${v.id} ${v.status}: ${(v.steps ?? []).map((s: any) => `${s.agent}/${s.name}=${s.status}`).join(" ")}`),
      ...wrongEnd,
      ...missingViews,
    ]),
  });

  // 8. nothing applied twice: results seen terminal never change afterwards
  const re = findReapplications(d.stepHistory, d.deploymentHistory, d.startedAt);
  const sampled = [...d.stepHistory.values()].filter((h) => DURING_RUN.has(h.samples[0]?.source)).length;
  const comparedWithD1 = "error" in d.d1Deployments ? 0 : [...d.d1Deployments.steps.keys()].filter((id) => d.stepHistory.has(id)).length;
  const d1Missing = "error" in d.d1Deployments ? [`cannot read D1: ${d.d1Deployments.error}`] : [];
  const afterEnd = "error" in d.d1Deployments ? [] : reportedAfterEnd(d.d1Deployments.steps, d.d1Deployments.deployments);
  checks.push({
    name: "nothing applied twice (a result seen terminal never changes: status, exit code, reason, finishedAt, reportedAt)",
    pass: re.steps.length === 0 && re.deployments.length === 0 && afterEnd.length === 0 && d1Missing.length === 0 && d.stepHistory.size > 0,
    details: cap([
      `${d.stepHistory.size} step results sampled (${sampled} first seen terminal while the run went on, in ${d.observerReads} reads), ${comparedWithD1} compared with D1 at the end`,
      ...d1Missing,
      ...re.steps.map((x) => `applied twice: ${x}`),
      ...re.deployments.map((x) => `changed after it ended: ${x}`),
      ...afterEnd.map((x) => `applied after its deployment ended: ${x}`),
    ]),
  });

  // 9. exactly as many deployments as requested (Idempotency-Key)
  const idem: string[] = [];
  const planned = d.cfg.deployments + d.cfg.agentLostRuns;
  if (d.submissions.length !== planned) idem.push(`${d.submissions.length} deployments submitted, ${planned} planned`);
  for (const s of d.submissions.filter((s) => !s.id)) idem.push(`${s.key}: never created: ${s.error} after ${s.attempts} attempt(s)`);
  for (const s of d.submissions) {
    if (s.replayed && s.replayed.id !== s.id) idem.push(`${s.key}: repeated POST with the same key answered ${s.replayed.status} id ${s.replayed.id} (first: ${s.id})${s.replayed.error ? ` ${s.replayed.error}` : ""}`);
  }
  if ("error" in d.d1Deployments) idem.push(`cannot count deployments in D1: ${d.d1Deployments.error}`);
  else {
    const byName = d.d1Deployments.byName;
    const total = [...byName.values()].reduce((a, b) => a + b, 0);
    if (total !== d.submissions.length) idem.push(`D1 holds ${total} deployments of this run, ${d.submissions.length} were requested`);
    for (const [name, n] of byName) if (n > 1) idem.push(`${name}: ${n} deployments in D1`);
  }
  const retried = d.submissions.filter((s) => s.attempts > 1 + (s.replayed ? 1 : 0)).length;
  checks.push({
    name: "exactly as many deployments as requested (retried POSTs with the same Idempotency-Key)",
    pass: idem.length === 0,
    details: cap([`${d.submissions.length} requested, ${retried} needed retries, ${d.submissions.filter((s) => s.replayed).length} repeated after success`, ...idem]),
  });

  // 10. journal and ledger agree at the end
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

  // 11. every fault kind injected (at least min-per-kind times)
  const fk: string[] = [];
  for (const k of FAULT_KINDS) {
    const t = d.faults[k];
    if (t.injected < d.cfg.minPerKind) fk.push(`${k}: injected ${t.injected} time(s), want ≥ ${d.cfg.minPerKind}${t.reasons.length ? `; not injected: ${t.reasons[0]}` : ""}`);
  }
  checks.push({ name: `every fault kind injected (≥ ${d.cfg.minPerKind} each)`, pass: fk.length === 0, details: cap(fk) });

  // 12. nothing died by itself
  checks.push({ name: "no anomalies (agents online at start, no process exited by itself)", pass: d.anomalies.length === 0, details: cap(d.anomalies.map((a) => `+${((a.at - d.startedAt) / 1000).toFixed(1)}s ${a.what}`)) });

  const figures: Figures = {
    steps: cases.length,
    deployments: d.submissions.length,
    agents: d.agents.length,
    lost: lost.length,
    duplicated: dup.length,
    ranWhenNotExpected: ranWhenNot.length,
    stuck: stuck.length + missingViews.length,
    unknownExecutions: unknown.length,
    badResults: problems.result.length + problems.timeout.length + problems["agent-lost"].length + problems.interrupted.length,
    appliedTwice: new Set([...re.steps, ...afterEnd].map((x) => x.split(" ")[1])).size + re.deployments.length,
    sampledDuringRun: sampled,
    comparedWithD1,
    observerReads: d.observerReads,
    multiChunkLogs: multiChunk,
    multiChunkPlanned,
    logBytesChecked: logBytes,
    logRangesRead: ranges,
    badLogs: badLogs.length,
    timeoutsPlanned: timeoutCases.length,
    timeoutsAsPlanned: timeoutsOk,
    skippedAfterFailure,
    agentLostRuns: d.agentLost.length,
    agentLostExpired: expired,
    lateResults: lateOk,
    lateResultsPlanned: lateCases.length,
    interruptedNotRun: accepted.length,
    badInterrupted: problems.interrupted.length,
    settleSeconds: d.settledAt === null ? null : (d.settledAt - d.healedAt) / 1000,
    totalSeconds: (d.endedAt - d.startedAt) / 1000,
  };
  return { checks, figures };
}

// Where two logs part: the first differing byte, and the sizes — a repeated or missing
// upload chunk shows as a difference at a chunk boundary and a size off by its length.
export function describeDifference(got: Buffer, want: Buffer): string {
  let i = 0;
  const n = Math.min(got.length, want.length);
  while (i < n && got[i] === want[i]) i++;
  const show = (b: Buffer) => JSON.stringify(b.subarray(i, i + 40).toString("latin1"));
  const boundary = i % UPLOAD_CHUNK === 0 && i > 0 ? ` (an upload chunk boundary: ${i / UPLOAD_CHUNK} MiB)` : "";
  return `log differs from byte ${i}${boundary}: ${got.length} bytes, want ${want.length}; got ${show(got)}, want ${show(want)}`;
}
