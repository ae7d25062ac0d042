// Resolving a step's expressions and inputs at start; a plug-in step's env and argv.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CommandContext, PluginStepToRun, StepToRun } from "../../schema/agent-api.ts";
import type { PluginInput } from "../../schema/plugin.ts";
import { STEP_REASON_MAX } from "../../schema/steps.ts";
import { pluginArgv, PluginArgvError, PluginEnvError, pluginStepEnv, resolveStep, type ResolveContext } from "./resolve-step.ts";

const context: CommandContext = {
  deploymentProperties: { env: "prod", region: "eu" },
  agentName: "web-1",
  agentProperties: { rack: "r7" },
};
const outputs: Record<string, Record<string, string>> = { build: { version: "1.2.3", digest: "sha256:abc" } };
const ctx = (over: Partial<ResolveContext> = {}): ResolveContext => ({
  context,
  secrets: { TOKEN: "t0ps3cret", PASS: "hunter2" },
  outputsOf: (name) => outputs[name] ?? null,
  ...over,
});

const shell = (command: string): StepToRun => ({ type: "shell", stepId: "s1", position: 0, name: "deploy", timeoutSeconds: null, retry: "never", command });

function input(name: string, over: Partial<PluginInput> = {}): PluginInput {
  return { name, type: "string", required: false, secret: false, ...over };
}
function plugin(inputs: PluginStepToRun["inputs"], inputDefs: PluginInput[]): StepToRun {
  return {
    type: "plugin",
    stepId: "s2",
    position: 1,
    name: "check",
    timeoutSeconds: 60,
    retry: "never",
    plugin: { id: "http-check", version: "1.0.0", sha256: "a".repeat(64) },
    step: "wait-for-url",
    run: ["sh", "run.sh"],
    inputs,
    inputDefs,
    outputs: ["status"],
  };
}

describe("resolveStep: shell steps", () => {
  it("replaces every kind of expression in the command", () => {
    const cmd = "deploy --env ${{ deployment.properties.env }} --on ${{agent.name}}/${{ agent.properties.rack }} --v ${{ steps.build.outputs.version }} --token ${{ secrets.TOKEN }} $HOME ${HOME}";
    expect(resolveStep(shell(cmd), ctx())).toEqual({ ok: true, command: "deploy --env prod --on web-1/r7 --v 1.2.3 --token t0ps3cret $HOME ${HOME}" });
  });

  it("fails naming every reference it cannot resolve, each once", () => {
    const cmd = "echo ${{ steps.build.outputs.nope }} ${{ steps.later.outputs.x }} ${{ secrets.MISSING }} ${{ deployment.properties.none }} ${{ secrets.MISSING }}";
    expect(resolveStep(shell(cmd), ctx())).toEqual({
      ok: false,
      reason: "cannot resolve ${{ steps.build.outputs.nope }}, ${{ steps.later.outputs.x }}, ${{ secrets.MISSING }}, ${{ deployment.properties.none }}",
    });
  });

  it("without a context (an old command) resolves only secrets and step outputs", () => {
    const cmd = "x ${{ secrets.PASS }} ${{ steps.build.outputs.digest }} ${{ agent.name }} ${{ agent.properties.rack }}";
    expect(resolveStep(shell(cmd), ctx({ context: undefined }))).toEqual({ ok: false, reason: "cannot resolve ${{ agent.name }}, ${{ agent.properties.rack }}" });
    expect(resolveStep(shell("x ${{ secrets.PASS }} ${{ steps.build.outputs.digest }}"), ctx({ context: undefined }))).toEqual({ ok: true, command: "x hunter2 sha256:abc" });
  });

  it("never takes a value from an object's prototype", () => {
    expect(resolveStep(shell("${{ secrets.toString }} ${{ steps.build.outputs.constructor }}"), ctx()).ok).toBe(false);
  });

  it("keeps the reason within STEP_REASON_MAX", () => {
    const cmd = Array.from({ length: 40 }, (_, i) => `\${{ steps.some-long-step-name-${i}.outputs.value }}`).join(" ");
    const r = resolveStep(shell(cmd), ctx());
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.reason.length).toBe(STEP_REASON_MAX);
      expect(r.reason.startsWith("cannot resolve ${{ steps.some-long-step-name-0.outputs.value }}, ")).toBe(true);
      expect(r.reason.endsWith("…")).toBe(true);
    }
  });
});

describe("resolveStep: plug-in steps", () => {
  const defs = [
    input("url", { required: true }),
    input("times", { type: "number", default: 3 }),
    input("verbose", { type: "boolean", default: false }),
    input("note"),
  ];

  it("resolves expressions in string inputs, applies defaults, leaves out optional inputs with no value", () => {
    const r = resolveStep(plugin({ url: "https://${{ agent.name }}.example/v/${{ steps.build.outputs.version }}" }, defs), ctx());
    expect(r).toEqual({ ok: true, inputs: { url: "https://web-1.example/v/1.2.3", times: 3, verbose: false } });
  });

  it("coerces to the declared type: numbers and booleans from their text", () => {
    const r = resolveStep(plugin({ url: "u", times: " 2.5 ", verbose: "true", note: 7 }, defs), ctx());
    expect(r).toEqual({ ok: true, inputs: { url: "u", times: 2.5, verbose: true, note: "7" } });
    const fromExpr = resolveStep(plugin({ url: "u", times: "${{ deployment.properties.region }}" }, defs), ctx({ context: { ...context, deploymentProperties: { region: "12" } } }));
    expect(fromExpr).toEqual({ ok: true, inputs: { url: "u", times: 12, verbose: false } });
  });

  it("fails when a value is not of the declared type", () => {
    expect(resolveStep(plugin({ url: "u", times: "abc" }, defs), ctx())).toEqual({ ok: false, reason: "input 'times' must be a number, got 'abc'" });
    expect(resolveStep(plugin({ url: "u", times: "" }, defs), ctx())).toEqual({ ok: false, reason: "input 'times' must be a number, got ''" });
    expect(resolveStep(plugin({ url: "u", times: true }, defs), ctx())).toEqual({ ok: false, reason: "input 'times' must be a number, got true" });
    expect(resolveStep(plugin({ url: "u", verbose: "yes" }, defs), ctx())).toEqual({ ok: false, reason: "input 'verbose' must be a boolean, got 'yes'" });
    expect(resolveStep(plugin({ url: "u", verbose: 1 }, defs), ctx())).toEqual({ ok: false, reason: "input 'verbose' must be a boolean, got 1" });
  });

  it("masks a secret value quoted in a reason", () => {
    const r = resolveStep(plugin({ url: "u", times: "${{ secrets.PASS }}" }, defs), ctx());
    expect(r).toEqual({ ok: false, reason: "input 'times' must be a number, got '***'" });
  });

  it("fails on a required input with no value and on an undeclared input, listing every problem", () => {
    const r = resolveStep(plugin({ extra: "x", times: "${{ steps.build.outputs.nope }}" }, defs), ctx());
    expect(r).toEqual({
      ok: false,
      reason: "cannot resolve ${{ steps.build.outputs.nope }}; input 'extra' is not an input of http-check/wait-for-url; required input 'url' has no value",
    });
  });

  it("keeps an input named __proto__ as a plain key", () => {
    const r = resolveStep(plugin({ __proto__: "x" } as unknown as Record<string, string>, [input("__proto__")]), ctx());
    expect(r.ok).toBe(true);
  });
});

describe("pluginStepEnv", () => {
  it("gives the folder, the files, the agent's node and one variable per input", () => {
    const env = pluginStepEnv({ pluginDir: "/p", inputsFile: "/s/in.json", outputsFile: "/s/out", inputs: { url: "u", "max-tries": 3, dryRun: false }, node: "/opt/node" });
    expect(env).toEqual({
      OUTPOST_PLUGIN_DIR: "/p",
      OUTPOST_INPUTS: "/s/in.json",
      OUTPOST_OUTPUTS: "/s/out",
      OUTPOST_NODE: "/opt/node",
      OUTPOST_INPUT_URL: "u",
      OUTPOST_INPUT_MAX_TRIES: "3",
      OUTPOST_INPUT_DRYRUN: "false",
    });
    expect(pluginStepEnv({ pluginDir: "/p", inputsFile: "i", outputsFile: "o", inputs: {} }).OUTPOST_NODE).toBe(process.execPath);
  });

  it("refuses two inputs that would share a variable", () => {
    expect(() => pluginStepEnv({ pluginDir: "/p", inputsFile: "i", outputsFile: "o", inputs: { "a-b": 1, a_b: 2 } })).toThrow(PluginEnvError);
    expect(() => pluginStepEnv({ pluginDir: "/p", inputsFile: "i", outputsFile: "o", inputs: { "a-b": 1, a_b: 2 } })).toThrow("inputs 'a-b' and 'a_b' would both be given as OUTPOST_INPUT_A_B");
  });
});

describe("pluginArgv", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "outpost-argv-"));
    mkdirSync(join(dir, "bin"));
    mkdirSync(join(dir, "lib"));
    for (const f of ["greet.sh", "bin/tool", "sh", "lib/x.mjs"]) writeFileSync(join(dir, f), "");
    symlinkSync("greet.sh", join(dir, "hello"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("resolves files of the folder, leaves commands on PATH and other words alone", () => {
    expect(pluginArgv(["sh", "greet.sh"], dir)).toEqual(["sh", `${dir}/greet.sh`]);
    expect(pluginArgv(["./bin/tool", "--x"], dir)).toEqual([`${dir}/bin/tool`, "--x"]);
    expect(pluginArgv(["bin/tool"], dir)).toEqual([`${dir}/bin/tool`]);
    expect(pluginArgv(["node", "lib/x.mjs", "hello", "./later.txt"], dir)).toEqual(["node", `${dir}/lib/x.mjs`, `${dir}/hello`, `${dir}/later.txt`]);
    // "sh" exists in the folder but a bare run[0] is a command on PATH; "./sh" is the file.
    expect(pluginArgv(["sh", "-c", "echo"], dir)).toEqual(["sh", "-c", "echo"]);
    expect(pluginArgv(["./sh"], dir)).toEqual([`${dir}/sh`]);
    // Flags, URLs, folders, missing files and absolute paths are passed as written.
    const asWritten = ["--file=./greet.sh", "https://x.example/a/b", "lib", "out/result.txt", "/etc/hosts", "", "greet.sh/x"];
    expect(pluginArgv(["/bin/echo", ...asWritten], dir)).toEqual(["/bin/echo", ...asWritten]);
  });

  it("refuses a path that leads out of the folder", () => {
    for (const run of [["sh", "../../etc/passwd"], ["../x"], ["./bin/../../x"], ["sh", "./"]]) {
      expect(() => pluginArgv(run, dir), JSON.stringify(run)).toThrow(PluginArgvError);
    }
    expect(() => pluginArgv(["sh", "../../etc/passwd"], dir)).toThrow("run[1] '../../etc/passwd' does not name a file inside the plug-in folder");
    // Judged by where it leads, not by how it is spelled.
    expect(pluginArgv(["sh", `../${dir.split("/").pop()}/greet.sh`], dir)).toEqual(["sh", `${dir}/greet.sh`]);
    // Not "./" or "../": a word that happens to climb out is not a path of the folder.
    expect(pluginArgv(["sh", "lib/../../etc/passwd"], dir)).toEqual(["sh", "lib/../../etc/passwd"]);
  });
});
