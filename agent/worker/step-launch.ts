// Everything a step needs before its process starts (docs/plugins.md §Runtime): the
// secrets it names (fetched for this step only, kept in memory), its expressions
// resolved, a plug-in's package in place, and the files the wrapper reads — command.sh,
// inputs.json, the mask filter's list — written privately. A step that cannot start
// gets the outcome to report instead. Network trouble is waited out (the step has not
// started yet, so nothing is lost by waiting); a definite refusal fails the step.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { CommandContext, StepToRun } from "../../schema/agent-api.ts";
import { Backoff } from "../backoff.ts";
import { describeCause, shouldRetry } from "../errors.ts";
import { FILE_MODE } from "../home.ts";
import type { Logger } from "../log.ts";
import { PluginFetchError, type PluginCache } from "../plugins/plugin-cache.ts";
import { pluginArgv, pluginStepEnv, resolveStep } from "../steps/resolve-step.ts";
import { stepDirName, type StepPaths } from "../steps/shell-step.ts";
import type { ApiClient } from "./api-client.ts";
import type { StepOutcome } from "./reports.ts";

export type LaunchDeps = { api: ApiClient; plugins: PluginCache; log: Logger; workDir: string; stopped: () => boolean };

export type Launch =
  | { ok: true; script: string; env: Record<string, string>; cwd: string; secrets: string[]; declaredOutputs: string[] | null }
  | { ok: false; outcome: StepOutcome };

export class LaunchStopped extends Error {
  constructor() {
    super("the worker is stopping");
    this.name = "LaunchStopped";
  }
}

const failed = (reason: string): Launch => ({ ok: false, outcome: { status: "failed", exitCode: null, reason } });

// The per-deployment work folder its steps share on this agent.
export const deploymentWorkDir = (workDir: string, deploymentId: string): string => join(workDir, stepDirName(deploymentId));

export async function prepareLaunch(
  deps: LaunchDeps,
  step: StepToRun,
  deploymentId: string,
  context: CommandContext | undefined,
  paths: StepPaths,
  outputsOf: (stepName: string) => Record<string, string> | null,
): Promise<Launch> {
  const secrets = await fetchSecrets(deps, step);
  if (!secrets.ok) return secrets;
  const resolved = resolveStep(step, { context, secrets: secrets.values, outputsOf });
  if (!resolved.ok) return failed(resolved.reason);
  const cwd = deploymentWorkDir(deps.workDir, deploymentId);
  // What is masked: the secrets fetched, and whatever a secret-declared input resolved to.
  const values = [...Object.values(secrets.values)];
  if (step.type === "plugin") {
    for (const def of step.inputDefs) {
      const v = resolved.inputs?.[def.name];
      if (def.secret && typeof v === "string" && v !== "") values.push(v);
    }
  }
  if (step.type === "shell") return { ok: true, script: resolved.command!, env: {}, cwd, secrets: values, declaredOutputs: null };

  let dir: string;
  try {
    dir = await retrying(deps, `fetching plug-in ${step.plugin.id}@${step.plugin.version}`, () => deps.plugins.ensure(step.plugin));
  } catch (e) {
    if (e instanceof LaunchStopped) throw e;
    return failed(`plug-in ${step.plugin.id}@${step.plugin.version} is not usable: ${describeCause(e)}`);
  }
  let argv: string[];
  let env: Record<string, string>;
  try {
    argv = pluginArgv(step.run, dir);
    env = pluginStepEnv({ pluginDir: dir, inputsFile: paths.inputs, outputsFile: paths.outputs, inputs: resolved.inputs ?? {} });
  } catch (e) {
    return failed(describeCause(e));
  }
  writeFileSync(paths.inputs, JSON.stringify(resolved.inputs ?? {}), { mode: FILE_MODE });
  return { ok: true, script: `exec ${argv.map(shellQuote).join(" ")}`, env, cwd, secrets: values, declaredOutputs: step.outputs };
}

// The mask filter's list: written just before the step starts, deleted by the filter.
// Each secret also as it reads inside a JSON string (a step printing JSON, an outputs
// file written as JSON), when that differs.
export function writeMasks(paths: StepPaths, secrets: string[]): void {
  writeFileSync(paths.masks, JSON.stringify(maskVariants(secrets)), { mode: FILE_MODE });
}

export function maskVariants(secrets: readonly string[]): string[] {
  return [...new Set(secrets.flatMap((s) => [s, JSON.stringify(s).slice(1, -1)]))];
}

type Secrets = { ok: true; values: Record<string, string> } | { ok: false; outcome: StepOutcome };

export async function fetchSecrets(deps: LaunchDeps, step: StepToRun): Promise<Secrets> {
  if (!step.secrets?.length) return { ok: true, values: {} };
  const answer = await retrying(deps, `fetching the secrets of step ${step.stepId}`, () => deps.api.stepSecrets(step.stepId));
  if (answer.kind === "missing") return { ok: false, outcome: { status: "failed", exitCode: null, reason: `secret(s) not found: ${answer.missing.join(", ")}` } };
  if (answer.kind === "ended") return { ok: false, outcome: { status: "canceled", exitCode: null, reason: "canceled: the server ended this step before it started" } };
  if (answer.kind === "unknown") return { ok: false, outcome: { status: "failed", exitCode: null, reason: "the server does not know this step as this agent's; its secrets were not given" } };
  return { ok: true, values: answer.secrets };
}

// Retries what shouldRetry allows (network, 5xx, 429 …) — also as the cause of a failed
// plug-in download — with back-off until the worker stops.
async function retrying<T>(deps: LaunchDeps, what: string, fn: () => Promise<T>): Promise<T> {
  const backoff = new Backoff({ minMs: 500, maxMs: 30_000 });
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (!shouldRetry(e instanceof PluginFetchError ? e.cause : e)) throw e;
      if (deps.stopped()) throw new LaunchStopped();
      const delay = backoff.next();
      deps.log.warn(`${what} failed (${describeCause(e)}); retrying in ${delay} ms`);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
