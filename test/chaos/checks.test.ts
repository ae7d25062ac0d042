// The chaos checks against planted faults: a clean synthetic run passes every check,
// and each fault the new checks exist for — a report applied twice (planted by a
// direct update of a real D1 file too), a log chunk repeated or missing, a step
// interrupted after it ran, a timeout that did not end its step, a late result not
// recorded as late — fails the check meant to catch it. Also: the big steps' shell
// command prints exactly the bytes the log check expects.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { projectRoot } from "../support/local-server.ts";
import { evaluate, type Check } from "./checks.ts";
import { readD1File, type D1State } from "./collect.ts";
import { SMALL, type ChaosConfig } from "./config.ts";
import { ResultObserver, findReapplications, reportedAfterEnd } from "./observer.ts";
import type { RunData } from "./orchestrator.ts";
import { AGENT_LOST_REASON, LATE_REASON, expectedBigOutput, expectedChain, expectedOutput, stepCommand, stepName, type DeploymentPlan, type StepKind, type StepPlan } from "./plan.ts";
import { FAULT_KINDS } from "./schedule.ts";
import type { Submission } from "./submissions.ts";

const T0 = Date.parse("2030-01-01T00:00:00.000Z");
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

function step(position: number, kind: StepKind, retry: "never" | "safe" = "never", bigKiB = 1200): StepPlan {
  return { name: stepName(position, kind), position, kind, retry, timeoutSeconds: kind === "timeout" ? 1 : null, sleepSeconds: 0, bigBytes: kind === "big" ? bigKiB * 1024 : 0 };
}

const plan = (key: string, agents: string[], steps: StepPlan[], expect: DeploymentPlan["expect"] = "succeeded"): DeploymentPlan =>
  ({ key, agents, agentLostAfterSeconds: expect === "agent-lost" ? 2 : 3600, steps, expect, gateFile: expect === "agent-lost" ? "/tmp/gate" : null, replay: false });

// A run in which everything went as planned.
function cleanRun() {
  const cfg: ChaosConfig = { ...SMALL, deployments: 3, agentLostRuns: 1, minPerKind: 1, seed: 1 };
  const agents = ["chaos-x-a1", "chaos-x-a2"].map((name, i) => ({ name, id: `agent-${i + 1}`, home: "/nonexistent", proc: null, down: false, restartTimer: null, starts: 1 }));
  const [a1, a2] = agents.map((a) => a.name);
  const plans = [
    plan("chaos-x-d0", [a1], [step(1, "ok"), step(2, "big", "safe", 3000), step(3, "plugin")]),
    plan("chaos-x-d1", [a1, a2], [step(1, "ok"), step(2, "timeout"), step(3, "ok")], "timeout"),
    plan("chaos-x-d2", [a2], [step(1, "ok"), step(2, "ok"), step(3, "ok", "safe")]),
    plan("chaos-x-lost0", [a1], [step(1, "gate", "safe"), step(2, "big", "safe"), step(3, "ok", "safe")], "agent-lost"),
  ];
  const submissions: Submission[] = plans.map((p, i) => ({ index: i, key: p.key, plan: p, agents: p.agents, steps: p.steps.length, id: `dep-${i}`, attempts: 1, error: null, replayed: null }));
  const views = new Map<string, any>();
  const executions = new Map<string, number>();
  const logs = new Map<string, any>();
  const observer = new ResultObserver();
  const d1: D1State = { source: "fixture", byName: new Map(), deployments: new Map(), steps: new Map() };
  submissions.forEach((sub, i) => {
    const chain = expectedChain(sub.plan);
    const created = T0 + i * 10_000;
    const steps: any[] = [];
    for (const agent of sub.plan.agents) {
      sub.plan.steps.forEach((sp, k) => {
        const exp = chain[k];
        const id = `${sub.id}-${agent.slice(-2)}-${k + 1}`;
        const finishedAt = created + 1_000 * (k + 1);
        const reason = exp.reason === "timeout" ? "timeout: still running after 1 s, process group killed" : exp.reason === "late" ? LATE_REASON : exp.status === "skipped" ? "an earlier step failed" : null;
        const outputs = sp.kind === "plugin" && exp.status === "succeeded" ? { step: id } : {};
        steps.push({ id, agent, name: sp.name, status: exp.status, exitCode: exp.exitCode, reason, outputs, startedAt: iso(finishedAt - 500), finishedAt: iso(finishedAt), reportedAt: iso(finishedAt + 20) });
        if (exp.runs) executions.set(id, 1);
        const bytes = exp.log === "output" ? expectedOutput(sp, id) : Buffer.alloc(0);
        logs.set(id, { bytes, size: bytes.length, complete: true, ranges: Math.max(1, Math.ceil(bytes.length / (200 * 1024))) });
      });
    }
    const finishedAt = created + 1_000 * sub.plan.steps.length;
    const view = { id: sub.id, name: sub.key, status: sub.plan.expect === "succeeded" ? "succeeded" : "failed", createdAt: iso(created), finishedAt: iso(finishedAt), steps };
    views.set(sub.id!, view);
    if (sub.plan.expect === "agent-lost") {
      // first seen failed as agent-lost, then the real results arrive late
      observer.recordView({ ...view, steps: steps.map((s) => ({ ...s, status: "failed", exitCode: null, reason: AGENT_LOST_REASON, reportedAt: null, finishedAt: iso(finishedAt) })) }, "poll", T0 + 1);
    }
    observer.recordView(view, "poll", T0 + 2);
    observer.recordView(view, "final API", T0 + 3);
    d1.byName.set(sub.key, 1);
    d1.deployments.set(sub.id!, { name: sub.key, status: view.status, finishedAt, updatedAt: finishedAt + 50 });
    for (const s of steps) {
      d1.steps.set(s.id, { deploymentId: sub.id!, agent: s.agent, name: s.name, status: s.status, exitCode: s.exitCode, reason: s.reason, finishedAt: Date.parse(s.finishedAt), reportedAt: Date.parse(s.reportedAt) });
    }
  });
  for (const [id, s] of d1.steps) observer.recordStep(id, s, s, "D1", T0 + 4);
  for (const [id, dep] of d1.deployments) observer.recordDeployment(id, { status: dep.status, finishedAt: dep.finishedAt }, "D1", T0 + 4);
  const faults = Object.fromEntries(FAULT_KINDS.map((k) => [k, { injected: 1, notInjected: 0, reasons: [] as string[] }])) as unknown as RunData["faults"];
  const channel = { connected: true, head: 3, acked: 3, openCommands: 0, pendingProjections: 0 };
  const journal = { outbox: 0, commands: [1, 2, 3].map((seq) => ({ seq, id: `c${seq}`, state: "done" })), lastSeq: 3, runningSteps: [] };
  const stats = { accepted: 0, connectionsCut: 0, refused: 0, wsRejected: 0, bytesDropped: 0, bytesForwarded: 0, stalledConnections: 0, halfOpened: 0 };
  const data: RunData = {
    cfg, runId: "x", work: "/tmp", execDir: "/tmp", agents, submissions, faults, proxyStats: stats, apiProxyStats: stats, anomalies: [],
    startedAt: T0, faultPhaseEndedAt: T0, lastFaultAt: T0, healedAt: T0, settledAt: T0, settleWaitedMs: 0,
    views, logs, channels: new Map(agents.map((a) => [a.name, { status: 200, json: { channel }, text: "" }])),
    journals: new Map(agents.map((a) => [a.name, journal])), executions, d1Deployments: d1,
    stepHistory: observer.steps, deploymentHistory: observer.deployments, observerReads: 10,
    agentLost: [{ key: "chaos-x-lost0", agent: a1, deploymentId: "dep-3", startedAt: T0, stoppedAt: T0 + 1_000, lostSeenAt: T0 + 4_000, relaunchedAt: T0 + 4_500, problems: [] }],
    stepStartKills: [],
    endedAt: T0 + 60_000,
  };
  return { data, observer, views, step: (dep: number, agent: "a1" | "a2", pos: number) => views.get(`dep-${dep}`).steps.find((s: any) => s.id === `dep-${dep}-${agent}-${pos}`) };
}

const failing = (checks: Check[]) => checks.filter((c) => !c.pass).map((c) => c.name);
const named = (checks: Check[], start: string) => {
  const c = checks.find((x) => x.name.startsWith(start));
  if (!c) throw new Error(`no check named ${start}…`);
  return c;
};

describe("chaos checks", () => {
  it("pass on a run in which everything went as planned", () => {
    const { data } = cleanRun();
    const { checks, figures } = evaluate(data);
    expect(failing(checks)).toEqual([]);
    expect(figures).toMatchObject({ multiChunkLogs: 2, timeoutsPlanned: 2, timeoutsAsPlanned: 2, lateResults: 3, appliedTwice: 0, interruptedNotRun: 0, skippedAfterFailure: 2 });
  });

  it("fail when a plug-in step's output is missing or its secret shows in its log", () => {
    const { data, step } = cleanRun();
    const plugin = step(0, "a1", 3);
    expect(plugin.outputs).toEqual({ step: plugin.id });
    plugin.outputs = {};
    const unmasked = Buffer.from(`out-${plugin.id}\ntoken chaos-token-value-never-in-a-log\n`);
    data.logs.set(plugin.id, { bytes: unmasked, size: unmasked.length, complete: true, ranges: 1 });
    const { checks } = evaluate(data);
    expect(named(checks, "every plug-in step that succeeded recorded its output").pass).toBe(false);
    expect(named(checks, "every log complete").pass).toBe(false);
  });

  describe("applied twice", () => {
    it("a step whose reportedAt changed after it was seen terminal", () => {
      const { data, observer, step } = cleanRun();
      const s = step(0, "a1", 1);
      const d1 = (data.d1Deployments as D1State).steps.get(s.id)!;
      observer.recordStep(s.id, d1, { ...d1, reportedAt: d1.reportedAt! + 1_500 }, "D1", T0 + 5);
      const { checks, figures } = evaluate(data);
      expect(failing(checks)).toEqual([named(checks, "nothing applied twice").name]);
      expect(named(checks, "nothing applied twice").details.join("\n")).toContain(`applied twice: step ${s.id}`);
      expect(figures.appliedTwice).toBe(1);
    });

    it("a late result applied again, and a deployment whose finishedAt moved", () => {
      const { data, observer, step } = cleanRun();
      const late = step(3, "a1", 2);
      const d1 = (data.d1Deployments as D1State).steps.get(late.id)!;
      observer.recordStep(late.id, d1, { ...d1, finishedAt: d1.finishedAt! + 7, reportedAt: d1.reportedAt! + 9 }, "D1", T0 + 5);
      observer.recordDeployment("dep-0", { status: "succeeded", finishedAt: T0 + 99_999 }, "D1", T0 + 5);
      const { checks } = evaluate(data);
      const details = named(checks, "nothing applied twice").details.join("\n");
      expect(details).toContain(`applied twice: step ${late.id}`);
      expect(details).toContain("changed after it ended: deployment dep-0");
    });

    it("a re-application too quick for the sampling: received after its deployment ended", () => {
      const { data } = cleanRun();
      const d1 = (data.d1Deployments as D1State).steps.get("dep-0-a1-3")!;
      d1.reportedAt = (data.d1Deployments as D1State).deployments.get("dep-0")!.updatedAt + 1;
      const { checks, figures } = evaluate(data);
      expect(failing(checks)).toEqual([named(checks, "nothing applied twice").name]);
      expect(named(checks, "nothing applied twice").details.join("\n")).toContain("applied after its deployment ended: step dep-0-a1-3");
      expect(figures.appliedTwice).toBe(1);
    });

    it("allows the one change a late result makes to a step failed as agent-lost", () => {
      const { data } = cleanRun();
      const h = data.stepHistory.get("dep-3-a1-1")!;
      expect(h.samples.map((s) => s.reason)).toEqual([AGENT_LOST_REASON, LATE_REASON]);
      expect(findReapplications(data.stepHistory, data.deploymentHistory, T0)).toEqual({ steps: [], deployments: [] });
    });

    it("catches a re-application planted by a direct update of a real D1 file", async () => {
      const dir = mkdtempSync(join(tmpdir(), "chaos-d1-"));
      try {
        const file = join(dir, "d1.sqlite");
        const { createClient } = await import("@libsql/client");
        const c = createClient({ url: "file:" + file });
        const migrations = join(projectRoot, "schema/migrations/d1");
        for (const f of readdirSync(migrations).filter((f) => f.endsWith(".sql")).sort()) await c.executeMultiple(readFileSync(join(migrations, f), "utf8").replaceAll("--> statement-breakpoint", ""));
        await c.execute({ sql: "INSERT INTO agents (id, name, credential_hash, created_at) VALUES ('ag1', 'chaos-r-a1', 'h', ?)", args: [T0] });
        await c.execute({ sql: "INSERT INTO deployments (id, name, status, created_at, updated_at, finished_at) VALUES ('dep1', 'chaos-r-d0', 'succeeded', ?, ?, ?)", args: [T0, T0 + 900, T0 + 800] });
        for (const [i, id] of ["st1", "st2"].entries()) {
          await c.execute({
            sql: `INSERT INTO deployment_steps (id, deployment_id, agent_id, position, name, type, command, retry, status, exit_code, started_at, finished_at, reported_at)
                  VALUES (?, 'dep1', 'ag1', ?, ?, 'shell', 'true', 'never', 'succeeded', 0, ?, ?, ?)`,
            args: [id, i + 1, `s${i + 1}-ok`, T0 + 100, T0 + 400 * (i + 1), T0 + 400 * (i + 1) + 30],
          });
        }
        const observer = new ResultObserver();
        const record = (state: D1State, source: string, at: number) => {
          for (const [id, s] of state.steps) observer.recordStep(id, s, s, source, at);
          for (const [id, dep] of state.deployments) observer.recordDeployment(id, { status: dep.status, finishedAt: dep.finishedAt }, source, at);
        };
        const before = await readD1File(file, "r");
        expect(reportedAfterEnd(before.steps, before.deployments)).toEqual([]);
        record(before, "poll", T0 + 1_000); // first seen terminal
        // the same step-finished report applied again, received later: what the projection's guard prevents
        await c.execute({ sql: "UPDATE deployment_steps SET reported_at = ?, finished_at = ? WHERE id = 'st2'", args: [T0 + 5_000, T0 + 4_900] });
        c.close();
        const after = await readD1File(file, "r");
        record(after, "D1", T0 + 6_000);
        const found = findReapplications(observer.steps, observer.deployments, T0);
        expect(found.deployments).toEqual([]);
        expect(found.steps).toHaveLength(1);
        expect(found.steps[0]).toMatch(/^step st2 .*reportedAt 1893456000830 \(poll .*reportedAt 1893456005000 \(D1/);
        // and D1 alone shows it, had it happened before the first sample: received after its deployment ended
        expect(reportedAfterEnd(after.steps, after.deployments)).toEqual([expect.stringMatching(/^step st2 .*reported_at 1893456005000 is 4100 ms after its deployment ended/)]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe("multi-chunk logs", () => {
    const bigStep = () => {
      const run = cleanRun();
      const s = run.step(0, "a1", 2);
      const log = run.data.logs.get(s.id) as { bytes: Buffer };
      expect(log.bytes.length).toBe(3000 * 1024);
      return { ...run, s, log };
    };

    it("an upload chunk applied twice (overlap)", () => {
      const { data, s, log } = bigStep();
      const MiB = 1024 * 1024;
      const chunk = log.bytes.subarray(MiB, 2 * MiB);
      log.bytes = Buffer.concat([log.bytes.subarray(0, 2 * MiB), chunk, log.bytes.subarray(2 * MiB)]);
      const { checks, figures } = evaluate(data);
      expect(failing(checks)).toEqual([named(checks, "every log complete").name]);
      expect(named(checks, "every log complete").details.join("\n")).toContain(`step ${s.id}`);
      expect(named(checks, "every log complete").details.join("\n")).toContain("log differs from byte 2097152 (an upload chunk boundary: 2 MiB)");
      expect(figures.badLogs).toBe(1);
    });

    it("a chunk missing (gap), a byte changed, an incomplete log", () => {
      for (const plant of [
        (b: Buffer) => Buffer.concat([b.subarray(0, 1024 * 1024), b.subarray(2048 * 1024)]),
        (b: Buffer) => Buffer.concat([b.subarray(0, 1_300_000), Buffer.from("X"), b.subarray(1_300_001)]),
      ]) {
        const { data, log } = bigStep();
        log.bytes = plant(log.bytes);
        expect(failing(evaluate(data).checks)).toEqual([named(evaluate(data).checks, "every log complete").name]);
      }
      const { data, log } = bigStep();
      (log as any).complete = false;
      expect(named(evaluate(data).checks, "every log complete").details.join("\n")).toContain("X-Log-Complete false");
    });

    it("fails when no multi-chunk log was checked", () => {
      const { data } = cleanRun();
      for (const sub of data.submissions) for (const s of sub.plan.steps) if (s.kind === "big") Object.assign(s, { bigBytes: 1000 });
      for (const v of data.views.values()) for (const s of v.steps) {
        const sub = data.submissions.find((x) => x.id === v.id)!;
        const sp = sub.plan.steps.find((p) => p.name === s.name)!;
        if (sp.kind === "big") (data.logs.get(s.id) as any).bytes = expectedOutput(sp, s.id);
      }
      expect(named(evaluate(data).checks, "every log complete").pass).toBe(false);
    });
  });

  describe("interrupted before the spawn", () => {
    // d2 on a2: s1 ok, s2 ok (never), s3 ok (safe). s2 interrupted: s3 skipped, deployment failed.
    const interrupt = (runs: number) => {
      const run = cleanRun();
      const s2 = run.step(2, "a2", 2);
      const s3 = run.step(2, "a2", 3);
      Object.assign(s2, { status: "interrupted", exitCode: null, reason: "interrupted: the step's process was gone without an exit status" });
      Object.assign(s3, { status: "skipped", exitCode: null, reason: "an earlier step interrupted" });
      run.views.get("dep-2").status = "failed";
      run.data.executions.delete(s3.id);
      if (runs === 0) run.data.executions.delete(s2.id);
      else run.data.executions.set(s2.id, runs);
      for (const s of [s2, s3]) (run.data.logs.get(s.id) as any).bytes = Buffer.alloc(0);
      return { ...run, s2, s3 };
    };

    it("is accepted when the step did not run", () => {
      const { data } = interrupt(0);
      const { checks, figures } = evaluate(data);
      expect(failing(checks)).toEqual([]);
      expect(figures.interruptedNotRun).toBe(1);
    });

    it("fails when the interrupted step ran", () => {
      const { data, s2 } = interrupt(1);
      const { checks, figures } = evaluate(data);
      expect(failing(checks)).toContain(named(checks, "interrupted only").name);
      expect(named(checks, "interrupted only").details.join("\n")).toContain(`step ${s2.id}`);
      expect(figures.badInterrupted).toBe(1);
    });

    it("fails for a retry \"safe\" step, a step that ran after it, or any other non-success", () => {
      const safe = cleanRun();
      const s3 = safe.step(2, "a2", 3);
      Object.assign(s3, { status: "interrupted", exitCode: null });
      safe.data.executions.delete(s3.id);
      safe.views.get("dep-2").status = "failed";
      (safe.data.logs.get(s3.id) as any).bytes = Buffer.alloc(0);
      expect(named(evaluate(safe.data).checks, "interrupted only").details.join("\n")).toContain('a retry "safe" step must be re-run');

      const ranAfter = interrupt(0);
      ranAfter.data.executions.set(ranAfter.s3.id, 1);
      expect(failing(evaluate(ranAfter.data).checks)).toContain(named(evaluate(ranAfter.data).checks, "every step executed as planned").name);

      const failed = cleanRun();
      Object.assign(failed.step(2, "a2", 2), { status: "failed", exitCode: 1, reason: "exit code 1" });
      failed.views.get("dep-2").status = "failed";
      const c = evaluate(failed.data).checks;
      expect(failing(c)).toEqual(expect.arrayContaining([named(c, "every step result recorded").name, named(c, "every deployment ended").name]));
    });
  });

  describe("timeouts", () => {
    it("fails when a timeout step succeeded, ran twice, or a later step was not skipped", () => {
      const a = cleanRun();
      Object.assign(a.step(1, "a1", 2), { status: "succeeded", exitCode: 0, reason: null });
      expect(named(evaluate(a.data).checks, "step timeouts").pass).toBe(false);

      const b = cleanRun();
      b.data.executions.set(b.step(1, "a2", 2).id, 2);
      const cb = evaluate(b.data);
      expect(failing(cb.checks)).toEqual([named(cb.checks, "every step executed as planned").name]);
      expect(cb.figures.duplicated).toBe(1);

      const c = cleanRun();
      const later = c.step(1, "a2", 3);
      Object.assign(later, { status: "succeeded", exitCode: 0, reason: null });
      c.data.executions.set(later.id, 1);
      const cc = evaluate(c.data).checks;
      expect(failing(cc)).toEqual(expect.arrayContaining([named(cc, "step timeouts").name, named(cc, "every step executed as planned").name]));

      const d = cleanRun();
      Object.assign(d.step(1, "a1", 2), { reason: "exit code 143 (killed by signal 15)", exitCode: 143 });
      expect(named(evaluate(d.data).checks, "step timeouts").details.join("\n")).toContain('want "timeout…"');
    });
  });

  describe("agent-lost", () => {
    it("fails when a result was not recorded as late, the deadline was not seen to expire, or the deployment succeeded", () => {
      const a = cleanRun();
      Object.assign(a.step(3, "a1", 3), { reason: null });
      expect(named(evaluate(a.data).checks, "agent-lost").details.join("\n")).toContain(`want "${LATE_REASON}…"`);

      const b = cleanRun();
      b.data.agentLost[0].lostSeenAt = null;
      b.data.agentLost[0].problems.push("the steps were not all failed as agent-lost 60 s after stopping the agent");
      expect(failing(evaluate(b.data).checks)).toEqual([named(evaluate(b.data).checks, "agent-lost").name]);

      const c = cleanRun();
      c.views.get("dep-3").status = "succeeded";
      expect(failing(evaluate(c.data).checks)).toEqual([named(evaluate(c.data).checks, "every deployment ended").name]);
    });
  });
});

describe("big steps print what the log check expects", () => {
  const dir = mkdtempSync(join(tmpdir(), "chaos-big-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("byte for byte, at sizes that end anywhere in a line", () => {
    const id = "0f8fad5b-d9cb-469f-a165-70867728950e";
    for (const bytes of [300 * 1024, 512_345, 700 * 1024 + 1]) {
      const s = { ...step(1, "big"), bigBytes: bytes };
      const out = execFileSync("/bin/sh", ["-c", stepCommand(s, join(dir, "count.txt"), null)], { env: { ...process.env, OUTPOST_STEP_ID: id }, maxBuffer: 64 << 20 });
      expect(out.length).toBe(bytes);
      expect(out.equals(expectedBigOutput(id, bytes))).toBe(true);
    }
    expect(readFileSync(join(dir, "count.txt"), "utf8")).toBe(`${id}\n${id}\n${id}\n`);
  });
});
