// What a step runs, worked out when it starts (docs/plugins.md §Expressions, §Runtime).
//
//   resolveStep(step, { context, secrets, outputsOf })
//     → { ok: true; command?: string; inputs?: Record<string, InputValue> } | { ok: false; reason: string }
//   pluginStepEnv({ pluginDir, inputsFile, outputsFile, inputs, node? }) → Record<string, string>
//   pluginArgv(run, pluginDir) → string[]            (throws PluginArgvError)
//
// resolveStep replaces the `${{ … }}` expressions of a shell step's command, or of a
// plug-in step's string inputs, with their values:
//   deployment.properties.K, agent.name, agent.properties.K → the command's context
//     (absent in commands stored before expressions existed: then only secrets and
//     step outputs resolve);
//   secrets.NAME → `secrets` (the values fetched for this step);
//   steps.STEP.outputs.K → `outputsOf(STEP)`, null when no earlier step of the
//     deployment has that name or it has not run.
// Every reference that cannot be resolved is named in one reason:
// "cannot resolve ${{ steps.build.outputs.version }}, ${{ secrets.X }}".
// A plug-in step's inputs are then its declared inputs (inputDefs), each the value
// given or else the default — an input given but not declared, or a required one with
// neither, fails the step — coerced to the declared type: a number is a finite number
// or a string that reads as one ("42", " 1.5 "), a boolean is true/false or the strings
// "true"/"false", a string input given a number or boolean gets its text. An optional
// input with no value and no default is left out. Reasons are at most STEP_REASON_MAX
// characters and never show a secret's value (they are masked).
//
// pluginArgv: "a relative path in `run` resolves inside the plug-in's folder". Exactly:
//   - run[0] is a path into the folder when it contains '/' or starts with '.'
//     ("./bin/tool", "bin/tool"), as the package check (schema/plugin-package.ts) has
//     made sure such a program is a file of the package; a bare name ("sh", "node") is
//     looked up on PATH; an absolute path is the machine's.
//   - a later element is a path into the folder when it starts with "./" or "../", or
//     when it names a file that exists in the folder ("greet.sh", "lib/x.mjs");
//     anything else — flags, URLs, words, paths of files the step will create in its
//     work folder — is passed as written.
//   - a path that would lead out of the folder ("../../etc/passwd") is refused
//     (PluginArgvError). The package check refuses such a run[0] at upload; for the
//     other elements this is the only check.
import { statSync } from "node:fs";
import { isAbsolute, relative, resolve, sep } from "node:path";
import { substitute, type Reference } from "../../schema/expressions.ts";
import type { CommandContext, StepToRun } from "../../schema/agent-api.ts";
import { inputEnvName, type InputValue, type PluginInput } from "../../schema/plugin.ts";
import { STEP_REASON_MAX } from "../../schema/steps.ts";
import { AgentError } from "../errors.ts";
import { maskText } from "./mask.ts";

export type ResolveContext = {
  context: CommandContext | undefined;
  secrets: Record<string, string>;
  outputsOf: (stepName: string) => Record<string, string> | null;
};
export type Resolved = { ok: true; command?: string; inputs?: Record<string, InputValue> } | { ok: false; reason: string };

export function resolveStep(step: StepToRun, ctx: ResolveContext): Resolved {
  const lookup = (r: Reference) => referenceValue(r, ctx);
  const secretValues = Object.values(ctx.secrets);
  const fail = (problems: string[]): Resolved => ({ ok: false, reason: clip(maskText(problems.join("; "), secretValues)) });

  if (step.type === "shell") {
    const { text, unresolved } = substitute(step.command, lookup);
    return unresolved.length ? fail([cannotResolve(unresolved)]) : { ok: true, command: text };
  }

  const problems: string[] = [];
  const unresolved = new Set<string>();
  const declared = new Set(step.inputDefs.map((d) => d.name));
  for (const name of Object.keys(step.inputs)) if (!declared.has(name)) problems.push(`input '${name}' is not an input of ${step.plugin.id}/${step.step}`);
  const inputs = new Map<string, InputValue>(); // not a plain object: an input may be named "__proto__"
  for (const def of step.inputDefs) {
    const given = Object.hasOwn(step.inputs, def.name) ? step.inputs[def.name] : def.default;
    if (given === undefined) {
      if (def.required) problems.push(`required input '${def.name}' has no value`);
      continue;
    }
    let value = given;
    if (typeof given === "string") {
      const s = substitute(given, lookup);
      s.unresolved.forEach((u) => unresolved.add(u));
      if (s.unresolved.length) continue; // its type cannot be judged from a half-resolved text
      value = s.text;
    }
    const coerced = coerce(def, value, secretValues);
    if (typeof coerced === "object") problems.push(coerced.problem);
    else inputs.set(def.name, coerced);
  }
  if (unresolved.size) problems.unshift(cannotResolve([...unresolved]));
  return problems.length ? fail(problems) : { ok: true, inputs: Object.fromEntries(inputs) };
}

function referenceValue(r: Reference, ctx: ResolveContext): string | null {
  const own = (o: Record<string, string> | null | undefined, key: string) => (o && Object.hasOwn(o, key) ? o[key] : null);
  switch (r.kind) {
    case "secret":
      return own(ctx.secrets, r.name);
    case "step-output":
      return own(ctx.outputsOf(r.step), r.key);
    case "deployment-property":
      return own(ctx.context?.deploymentProperties, r.key);
    case "agent-property":
      return own(ctx.context?.agentProperties, r.key);
    case "agent-name":
      return ctx.context?.agentName ?? null;
  }
}

// Masked before it is cut: a cut could leave part of a secret that no longer matches.
function coerce(def: PluginInput, value: InputValue, secrets: string[]): InputValue | { problem: string } {
  const shown = () => (typeof value === "string" ? `'${clip(maskText(value, secrets), 60)}'` : String(value));
  const bad = () => ({ problem: `input '${def.name}' must be a ${def.type}, got ${shown()}` });
  switch (def.type) {
    case "string":
      return String(value);
    case "number": {
      if (typeof value === "number") return Number.isFinite(value) ? value : bad();
      if (typeof value !== "string" || value.trim() === "") return bad();
      const n = Number(value.trim());
      return Number.isFinite(n) ? n : bad();
    }
    case "boolean":
      if (typeof value === "boolean") return value;
      if (value === "true" || value === "false") return value === "true";
      return bad();
  }
}

const cannotResolve = (refs: string[]) => `cannot resolve ${refs.map((r) => `\${{ ${r} }}`).join(", ")}`;

function clip(text: string, max = STEP_REASON_MAX): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

export class PluginEnvError extends AgentError {
  constructor(message: string, context: Record<string, unknown>) {
    super(message, context);
    this.name = "PluginEnvError";
  }
}

// The environment a plug-in step gets on top of the agent's: where its folder, its
// inputs file (JSON of the resolved inputs) and its outputs file are, the agent's own
// Node (OUTPOST_NODE: `node` may not be on PATH; the plug-ins' launchers use it), and
// each input as OUTPOST_INPUT_<NAME> (numbers and booleans as their text). Two inputs
// whose names give the same variable ("a-b" and "a_b") are refused rather than one
// silently hiding the other.
export function pluginStepEnv(opts: {
  pluginDir: string;
  inputsFile: string;
  outputsFile: string;
  inputs: Record<string, InputValue>;
  node?: string;
}): Record<string, string> {
  const env: Record<string, string> = {
    OUTPOST_PLUGIN_DIR: opts.pluginDir,
    OUTPOST_INPUTS: opts.inputsFile,
    OUTPOST_OUTPUTS: opts.outputsFile,
    OUTPOST_NODE: opts.node ?? process.execPath,
  };
  const from = new Map<string, string>();
  for (const [name, value] of Object.entries(opts.inputs)) {
    const key = inputEnvName(name);
    const other = from.get(key);
    if (other !== undefined) throw new PluginEnvError(`inputs '${other}' and '${name}' would both be given as ${key}`, { inputs: [other, name] });
    from.set(key, name);
    env[key] = String(value);
  }
  return env;
}

export class PluginArgvError extends AgentError {
  constructor(message: string, context: Record<string, unknown>) {
    super(message, context);
    this.name = "PluginArgvError";
  }
}

export function pluginArgv(run: readonly string[], pluginDir: string): string[] {
  const root = resolve(pluginDir);
  const inside = (arg: string, i: number): string => {
    const full = resolve(root, arg);
    if (!within(root, full)) throw new PluginArgvError(`run[${i}] '${arg}' does not name a file inside the plug-in folder ${root}`, { arg, index: i, pluginDir: root });
    return full;
  };
  return run.map((arg, i) => {
    if (arg === "" || isAbsolute(arg)) return arg;
    if (i === 0) return arg.includes("/") || arg.startsWith(".") ? inside(arg, i) : arg;
    if (arg.startsWith("./") || arg.startsWith("../")) return inside(arg, i);
    return isFileInside(root, arg) ? resolve(root, arg) : arg;
  });
}

// Does `arg` name a file of the folder (following the package's links, which the
// package check has kept inside it)? A path leading out of the folder is not one.
function isFileInside(root: string, arg: string): boolean {
  const full = resolve(root, arg);
  if (!within(root, full)) return false;
  try {
    return statSync(full).isFile();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR" || code === "ENAMETOOLONG" || code === "ELOOP") return false;
    throw e;
  }
}

// Strictly below root (root itself is not a file of it).
function within(root: string, full: string): boolean {
  const rel = relative(root, full);
  return rel !== "" && rel !== ".." && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}
