// Runs a plug-in step from plugins/ the way the agent does (docs/plugins.md §Runtime):
// its `run` argv with relative paths inside the plug-in folder, in its own process
// group, cwd a work folder, stdout+stderr into one log file, inputs as a private JSON
// file (defaults applied) and as OUTPOST_INPUT_*, outputs read back from OUTPOST_OUTPUTS.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { inputEnvName, MANIFEST_FILE, pluginManifest, type InputValue, type PluginManifest } from "../../schema/plugin.ts";

export const pluginsRoot = resolve(fileURLToPath(new URL("../../plugins", import.meta.url)));

export function loadManifest(folder: string): PluginManifest {
  return pluginManifest.parse(JSON.parse(readFileSync(join(pluginsRoot, folder, MANIFEST_FILE), "utf8")));
}

export type Finished = { code: number | null; signal: NodeJS.Signals | null; log: string; lines: string[]; outputs: Record<string, string> | null; ms: number };
export type Running = { child: ChildProcess; done: Promise<Finished>; workDir: string; inputsFile: string; logFile: string; stop(signal?: NodeJS.Signals): void };

// The two formats the contract allows: a JSON object, or key=value lines.
export function parseOutputs(text: string): Record<string, string> {
  const t = text.trim();
  if (t.startsWith("{")) return Object.fromEntries(Object.entries(JSON.parse(t) as Record<string, unknown>).map(([k, v]) => [k, String(v)]));
  const out: Record<string, string> = {};
  for (const line of t.split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

const started: Running[] = [];
const scratchDirs: string[] = [];

export function startPluginStep(
  folder: string,
  step: string,
  inputs: Record<string, InputValue>,
  opts: { workDir?: string; env?: Record<string, string> } = {},
): Running {
  const manifest = loadManifest(folder);
  const def = manifest.steps.find((s) => s.name === step);
  if (!def) throw new Error(`${folder} has no step ${step}`);
  const resolved: Record<string, InputValue> = {};
  for (const i of def.inputs) {
    const v = inputs[i.name] ?? i.default;
    if (v !== undefined) resolved[i.name] = v;
  }
  for (const k of Object.keys(inputs)) if (!(k in resolved)) resolved[k] = inputs[k]; // let tests pass what the manifest does not declare

  const pluginDir = join(pluginsRoot, folder);
  const scratch = mkdtempSync(join(tmpdir(), "outpost-plugin-run-"));
  scratchDirs.push(scratch);
  const workDir = opts.workDir ?? join(scratch, "work");
  const inputsFile = join(scratch, "inputs.json");
  const outputsFile = join(scratch, "outputs");
  const logFile = join(scratch, "output.log");
  writeFileSync(inputsFile, JSON.stringify(resolved), { mode: 0o600 });
  mkdirSync(workDir, { recursive: true }); // the agent creates the work folder before the first step

  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    OUTPOST_PLUGIN_DIR: pluginDir,
    OUTPOST_INPUTS: inputsFile,
    OUTPOST_OUTPUTS: outputsFile,
    OUTPOST_NODE: process.execPath,
    OUTPOST_DEPLOYMENT_ID: "dep-test",
    OUTPOST_STEP_ID: "step-test",
    ...Object.fromEntries(Object.entries(resolved).map(([k, v]) => [inputEnvName(k), String(v)])),
    ...opts.env,
  };
  const [cmd, ...args] = def.run.map((a, i) => (i > 0 && !isAbsolute(a) && existsSync(join(pluginDir, a)) ? join(pluginDir, a) : a));
  const log = openSync(logFile, "a");
  const t0 = performance.now();
  const child = spawn(cmd, args, { cwd: workDir, env, stdio: ["ignore", log, log], detached: true });
  closeSync(log);
  const done = new Promise<Finished>((res, rej) => {
    child.once("error", rej);
    child.once("exit", (code, signal) => {
      const ms = performance.now() - t0;
      const text = readFileSync(logFile, "utf8");
      const outputs = existsSync(outputsFile) ? parseOutputs(readFileSync(outputsFile, "utf8")) : null;
      rmSync(inputsFile, { force: true }); // as the agent does when the step ends
      res({ code, signal, log: text, lines: text.split("\n").filter((l) => l !== ""), outputs, ms });
    });
  });
  const running: Running = {
    child,
    done,
    workDir,
    inputsFile,
    logFile,
    // Like the agent: the whole process group.
    stop: (signal = "SIGTERM") => {
      try {
        process.kill(-child.pid!, signal);
      } catch {}
    },
  };
  started.push(running);
  return running;
}

export const runPluginStep = (folder: string, step: string, inputs: Record<string, InputValue>, opts?: { workDir?: string; env?: Record<string, string> }) =>
  startPluginStep(folder, step, inputs, opts).done;

// afterEach: nothing a test started survives it.
export async function cleanup() {
  for (const r of started.splice(0)) {
    if (r.child.exitCode === null && r.child.signalCode === null) r.stop("SIGKILL");
    await r.done.catch(() => {});
  }
  for (const d of scratchDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}
