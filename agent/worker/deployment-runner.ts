// Runs one deploy command on this agent: its steps sequentially in position
// order, each as a detached shell step (a plug-in step runs its argv the same way,
// prepared by step-launch.ts); every state change is journaled with its report in one
// transaction. Also recovers steps a previous worker left running: finish from the
// status file, re-attach, re-run (retry "safe") or report them interrupted. While it
// watches a step it keeps the step's output.log within the per-step cap
// (agent/steps/output-cap.ts). A cancel (docs/protocol.md §Cancel) stops the running
// step's process group and ends the others `canceled`; a step that ended first keeps
// its result.
import type { Command, StepToRun } from "../../schema/agent-api.ts";
import { findReferences } from "../../schema/expressions.ts";
import { describeCause } from "../errors.ts";
import type { Logger } from "../log.ts";
import { trace } from "../trace.ts";
import { capOutput, OUTPUT_CAP_BYTES, truncationNote } from "../steps/output-cap.ts";
import {
  findStepProcesses,
  isStepAlive,
  killStepLeftovers,
  logSize,
  outcomeFromEnd,
  prepareStepDir,
  readStatus,
  readStepPid,
  reattachShellStep,
  statusTime,
  timedOutAt,
  timeoutOutcome,
  CANCELED_OUTCOME,
  removeSecretFiles,
  startShellStep,
  stepPaths,
  waitForStep,
  type StepPaths,
  type StepProcess,
} from "../steps/shell-step.ts";
import { JournalError, type Journal, type StepRow } from "./journal.ts";
import type { StepOutcome } from "./reports.ts";
import { nextStep, recoverRunningStep, stepDeadline } from "./scheduling.ts";
import { mkdirSync } from "node:fs";
import { DIR_MODE } from "../home.ts";
import type { PluginCache } from "../plugins/plugin-cache.ts";
import { readOutputs } from "../steps/outputs-file.ts";
import type { ApiClient } from "./api-client.ts";
import { LaunchStopped, maskVariants, prepareLaunch, writeMasks, type LaunchDeps } from "./step-launch.ts";

const OUTPUT_CHECK_MS = 200;

export type DeploymentRunnerDeps = {
  journal: Journal;
  stepsDir: string;
  workDir: string;
  stepUmask: number | null; // for the user's command (null: the worker's own)
  api: ApiClient; // secrets and plug-in packages for the steps that need them
  plugins: PluginCache;
  log: Logger;
  onStepStarted: (stepId: string) => void; // a report was queued; start uploading output
  onStepEnded: (stepId: string) => void; // final state + report journaled
};

type DeployCommand = Extract<Command, { type: "deploy" }>;
const CANCELED_REASON = "canceled: the deployment was canceled";

export class DeploymentRunner {
  readonly #deps: DeploymentRunnerDeps;
  readonly #launch: LaunchDeps;
  #stopping = false;
  // One per deployment being run: a cancel aborts it, stopping the running step.
  readonly #cancels = new Map<string, AbortController>();
  // The secret values of the steps this worker started (in memory only): their output
  // and outputs are masked with them.
  readonly #secrets = new Map<string, string[]>();

  constructor(deps: DeploymentRunnerDeps) {
    this.#deps = deps;
    this.#launch = { api: deps.api, plugins: deps.plugins, log: deps.log, workDir: deps.workDir, stopped: () => this.#stopping };
  }

  // Stop taking new steps; running step processes are left to the next worker.
  stop(): void {
    this.#stopping = true;
  }

  // Called when commands were stored: a cancel for a deployment being run stops it now.
  async checkCancels(): Promise<void> {
    for (const [deploymentId, ac] of this.#cancels) {
      if (!ac.signal.aborted && (await this.#deps.journal.isCanceled(deploymentId))) {
        this.#deps.log.info(`deployment ${deploymentId} canceled: stopping its running step`);
        ac.abort();
      }
    }
  }

  async run(seq: number): Promise<void> {
    const { journal, log } = this.#deps;
    const { command } = await journal.command(seq);
    if (command.type !== "deploy") throw new JournalError(`command seq ${seq} is not a deploy command`, { seq });
    const specs = new Map(command.steps.map((s) => [s.stepId, s]));
    // Registered before the journal is asked: a cancel stored from now on aborts it
    // (checkCancels), one stored before is in the journal.
    const cancel = new AbortController();
    this.#cancels.set(command.deploymentId, cancel);
    if (await journal.isCanceled(command.deploymentId)) cancel.abort();
    try {
      for (;;) {
        if (this.#stopping) return;
        const steps = await journal.steps(seq);
        const next = nextStep(steps);
        const canceled = cancel.signal.aborted;
        if (canceled && next.kind !== "resume") {
          const pending = steps.filter((s) => s.state === "pending");
          await journal.endCommand(seq, pending, CANCELED_REASON, Date.now(), "canceled");
          for (const s of pending) this.#deps.onStepEnded(s.stepId);
          log.info(`deployment ${command.deploymentId} (command seq ${seq}) canceled on this agent`);
          return;
        }
        if (next.kind === "end") {
          await journal.endCommand(seq, next.skip, next.reason);
          for (const s of next.skip) this.#deps.onStepEnded(s.stepId);
          log.info(`deployment ${command.deploymentId} (command seq ${seq}) ${next.failed ? "failed" : "done"} on this agent`);
          return;
        }
        const spec = specs.get(next.step.stepId);
        if (!spec) throw new JournalError(`step ${next.step.stepId} is not in command seq ${seq}`, { seq });
        if (next.kind === "start") await this.#start(command, seq, spec, cancel.signal);
        else await this.#resume(command, spec, next.step, canceled, cancel.signal);
      }
    } finally {
      this.#cancels.delete(command.deploymentId);
    }
  }

  async #start(command: DeployCommand, seq: number, spec: StepToRun, cancel: AbortSignal): Promise<void> {
    const { journal, log } = this.#deps;
    const paths = stepPaths(this.#deps.stepsDir, spec.stepId);
    mkdirSync(paths.dir, { recursive: true, mode: DIR_MODE });
    let launch;
    try {
      launch = await prepareLaunch(this.#launch, spec, command.deploymentId, command.context, paths, await this.#outputsOf(command, seq, spec));
    } catch (e) {
      if (e instanceof LaunchStopped) return; // still pending: the next worker starts it
      throw e;
    }
    const startedAt = Date.now();
    if (!launch.ok) {
      await journal.startStep(spec.stepId, command.deploymentId, startedAt);
      this.#deps.onStepStarted(spec.stepId);
      log.warn(`step ${spec.stepId} (${spec.name}) cannot run: ${launch.outcome.reason}`);
      await this.#finish(command, spec, launch.outcome);
      return;
    }
    prepareStepDir(paths, launch.script);
    if (launch.secrets.length > 0) {
      this.#secrets.set(spec.stepId, launch.secrets);
      writeMasks(paths, launch.secrets);
    }
    await journal.startStep(spec.stepId, command.deploymentId, startedAt);
    this.#deps.onStepStarted(spec.stepId);
    let proc: StepProcess;
    try {
      proc = await startShellStep({
        stepId: spec.stepId,
        deploymentId: command.deploymentId,
        paths,
        cwd: launch.cwd,
        env: { ...process.env, ...launch.env },
        umask: this.#deps.stepUmask,
        masked: launch.secrets.length > 0,
      });
    } catch (e) {
      log.error(`step ${spec.stepId} (${spec.name}) could not start`, e);
      await this.#finish(command, spec, { status: "failed", exitCode: null, reason: `could not start: ${describeCause(e)}` });
      return;
    }
    // Not awaited (the wrapper also writes its pid file); journal writes stay in order.
    journal.setStepPid(spec.stepId, proc.pid).catch((e) => log.error(`cannot record pid of step ${spec.stepId}`, e));
    log.info(`step ${spec.stepId} (${spec.name}) started, pid ${proc.pid}`);
    const outcome = await this.#watch(spec.stepId, paths, () => waitForStep(proc, stepDeadline(startedAt, spec.timeoutSeconds, startedAt), spec.timeoutSeconds, cancel));
    await this.#finish(command, spec, outcome);
  }

  // `steps.NAME.outputs.K`: the outputs of an earlier step of this deployment on this agent.
  async #outputsOf(command: DeployCommand, seq: number, spec: StepToRun): Promise<(name: string) => Record<string, string> | null> {
    const text = spec.type === "shell" ? spec.command : JSON.stringify(spec.inputs);
    if (!findReferences(text).some((r) => r.kind === "step-output")) return () => null; // nothing to read
    const rows = new Map((await this.#deps.journal.steps(seq)).map((r) => [r.stepId, r]));
    return (name) => {
      const earlier = command.steps.find((s) => s.name === name && s.position < spec.position);
      const row = earlier ? rows.get(earlier.stepId) : undefined;
      if (!row || row.finishedAt === null) return null;
      return row.outputs === null ? {} : (JSON.parse(row.outputs) as Record<string, string>);
    };
  }

  async #resume(command: DeployCommand, spec: StepToRun, row: StepRow, canceled: boolean, cancel: AbortSignal): Promise<void> {
    const { journal, log } = this.#deps;
    const paths = stepPaths(this.#deps.stepsDir, spec.stepId);
    let status = readStatus(paths);
    // The pid from the journal, else the wrapper's pid file, else a search of /proc
    // (the worker may have died between spawning the step and recording its pid).
    const pid = row.pid ?? readStepPid(paths) ?? findStepProcesses(spec.stepId).find((p) => p.pid === p.pgid)?.pid ?? null;
    const alive = status === null && pid !== null && isStepAlive(pid, spec.stepId);
    // The wrapper may have written its status and exited between the two reads above.
    if (status === null && !alive) status = readStatus(paths);
    const timedOut = timedOutAt(paths);
    const decision = recoverRunningStep({ statusFileExists: status !== null, processAlive: alive, timedOut: timedOut !== null, retry: spec.retry });
    if (canceled && (decision === "reattach" || decision === "rerun" || decision === "interrupt")) {
      // Canceled while no worker watched it (or while this one was starting): stopped now.
      this.#killLeftovers(spec.stepId);
      log.info(`step ${spec.stepId} belongs to a canceled deployment; its processes were stopped`);
      this.#deps.onStepStarted(spec.stepId);
      await this.#finish(command, spec, CANCELED_OUTCOME);
      return;
    }
    switch (decision) {
      case "finish-timed-out":
        // An earlier worker gave it up as timed out and died while killing it.
        this.#killLeftovers(spec.stepId);
        log.warn(`step ${spec.stepId} had timed out when the previous worker stopped; recorded as a timeout`);
        this.#deps.onStepStarted(spec.stepId);
        await this.#finish(command, spec, timeoutOutcome(spec.timeoutSeconds), timedOut ?? Date.now());
        return;
      case "finish-from-status":
        log.info(`step ${spec.stepId} ended while no worker watched it (exit ${status})`);
        this.#deps.onStepStarted(spec.stepId);
        // Its report says when it ended, not when this worker found out (maybe hours later).
        await this.#finish(command, spec, outcomeFromEnd({ exitCode: status, signal: null }), statusTime(paths) ?? Date.now());
        return;
      case "reattach": {
        log.info(`re-attached to step ${spec.stepId}, pid ${pid}`);
        if (row.pid === null) await journal.setStepPid(spec.stepId, pid!);
        this.#deps.onStepStarted(spec.stepId);
        const proc = reattachShellStep(paths, pid!, spec.stepId);
        const outcome = await this.#watch(spec.stepId, paths, () => waitForStep(proc, stepDeadline(row.startedAt, spec.timeoutSeconds, Date.now()), spec.timeoutSeconds, cancel));
        await this.#finish(command, spec, outcome);
        return;
      }
      case "rerun":
        this.#killLeftovers(spec.stepId);
        log.warn(`step ${spec.stepId} was interrupted (no process, no exit status); re-running it (retry: safe)`);
        await journal.resetStepForRetry(spec.stepId);
        return;
      case "interrupt":
        this.#killLeftovers(spec.stepId);
        log.warn(`step ${spec.stepId} was interrupted (no process, no exit status); not re-run (retry: never)`);
        await this.#finish(command, spec, {
          status: "interrupted",
          exitCode: null,
          reason: "interrupted: the step's process was gone without an exit status (agent or machine restarted while it ran)",
        });
        return;
    }
  }

  // The wrapper is gone without a status, but what it started may live on: it must
  // not keep working on (or race a re-run of) a step reported interrupted.
  #killLeftovers(stepId: string): void {
    const groups = killStepLeftovers(stepId);
    if (groups.length) this.#deps.log.warn(`step ${stepId}: killed leftover process group(s) ${groups.join(", ")} of its interrupted run`);
  }

  // Waits for a step while keeping its output within the cap.
  async #watch(stepId: string, paths: StepPaths, wait: () => Promise<StepOutcome>): Promise<StepOutcome> {
    let busy = false;
    const timer = setInterval(() => {
      if (busy) return;
      busy = true;
      this.#capOutput(stepId, paths)
        .catch((e) => this.#deps.log.error(`cannot record the output cut from step ${stepId}`, e))
        .finally(() => (busy = false));
    }, OUTPUT_CHECK_MS);
    try {
      return await wait();
    } finally {
      clearInterval(timer);
    }
  }

  // Returns the bytes cut now; they are added to the step's journal row.
  async #capOutput(stepId: string, paths: StepPaths): Promise<number> {
    const { journal, log } = this.#deps;
    let dropped: number;
    try {
      dropped = capOutput(paths.log, OUTPUT_CAP_BYTES);
    } catch (e) {
      log.error(`cannot keep the output of step ${stepId} within ${OUTPUT_CAP_BYTES} bytes`, e);
      return 0;
    }
    if (dropped === 0) return 0;
    const before = (await journal.step(stepId))?.outputDropped ?? 0;
    if (before === 0) log.warn(`step ${stepId} wrote more than ${OUTPUT_CAP_BYTES} bytes of output: only the first ${OUTPUT_CAP_BYTES} are kept`);
    await journal.addOutputDropped(stepId, dropped);
    return dropped;
  }

  // The step's outputs file, masked with its secrets. A worker that did not start the step
  // (it restarted) does not hold them: the mask filter masked the file before the step's
  // status was written; without a status (the step was killed) the outputs are dropped,
  // never sent unmasked.
  #readOutputs(spec: StepToRun, paths: StepPaths): Record<string, string> {
    const held = this.#secrets.get(spec.stepId);
    const usedSecrets = (spec.secrets?.length ?? 0) > 0 || (spec.type === "plugin" && spec.inputDefs.some((d) => d.secret));
    if (held === undefined && usedSecrets && readStatus(paths) === null) {
      this.#deps.log.warn(`step ${spec.stepId}: ended without an exit status while no worker held its secrets; its outputs are dropped`);
      return {};
    }
    const { outputs, problems } = readOutputs(paths.outputs, { declared: spec.type === "plugin" ? spec.outputs : null, secrets: maskVariants(held ?? []) });
    for (const p of problems) this.#deps.log.warn(`step ${spec.stepId} (${spec.name}) outputs: ${p}`);
    return outputs;
  }

  async #finish(command: DeployCommand, spec: StepToRun, outcome: StepOutcome, endedAt = Date.now()): Promise<void> {
    const paths = stepPaths(this.#deps.stepsDir, spec.stepId);
    const ran = outcome.status === "succeeded" || outcome.status === "failed";
    if (ran && outcome.outputs === undefined) outcome = { ...outcome, outputs: this.#readOutputs(spec, paths) };
    removeSecretFiles(paths, spec.type === "shell" && (spec.secrets?.length ?? 0) > 0);
    this.#secrets.delete(spec.stepId);
    await this.#capOutput(spec.stepId, paths);
    const dropped = (await this.#deps.journal.step(spec.stepId))?.outputDropped ?? 0;
    const size = logSize(paths);
    let reason = outcome.reason;
    if (dropped > 0) {
      const note = truncationNote(OUTPUT_CAP_BYTES, dropped);
      reason = reason ? `${reason}; ${note}` : note;
    }
    await this.#deps.journal.finishStep(spec.stepId, command.deploymentId, { ...outcome, reason }, size, endedAt);
    trace("journaled", spec.stepId);
    const code = outcome.exitCode === null ? "" : ` (exit ${outcome.exitCode})`;
    this.#deps.log.info(`step ${spec.stepId} (${spec.name}) ${outcome.status}${code}${reason ? `: ${reason}` : ""}`);
    this.#deps.onStepEnded(spec.stepId);
  }
}
