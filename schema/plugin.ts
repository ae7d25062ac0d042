// Plug-in packages (docs/plugins.md): the manifest every package carries at its root,
// its naming rules and size limits. The Worker validates uploads with it, the agent
// reads the same manifest from the unpacked folder, the page renders input forms from it.
import { z } from "zod";

export const MANIFEST_FILE = "outpost-plugin.json";

export const PLUGIN_LIMITS = {
  packageBytes: 10 * 1024 * 1024, // the uploaded .tar.gz
  unpackedBytes: 64 * 1024 * 1024, // all files together, after gunzip
  entries: 2000,
  manifestBytes: 64 * 1024,
  stepsPerPlugin: 50,
  inputsPerStep: 50,
} as const;

export const pluginId = z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/, "a plug-in id is 1-64 lower-case letters, digits or '-', starting with a letter or digit");
// Semantic Versioning 2.0.0 (major.minor.patch, optional -pre-release and +build).
const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;
export const semver = z.string().max(100).regex(SEMVER, "a version is semver: MAJOR.MINOR.PATCH, e.g. 1.0.0");

export const INPUT_TYPES = ["string", "number", "boolean"] as const;
export type InputType = (typeof INPUT_TYPES)[number];
// Names become environment variables (OUTPOST_INPUT_<NAME>) and expression keys.
const fieldName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_-]{0,63}$/, "names are 1-64 letters, digits, '_' or '-', not starting with a digit or '-'");
export const inputValue = z.union([z.string().max(64 * 1024), z.number(), z.boolean()]);
export type InputValue = z.infer<typeof inputValue>;

export const pluginInput = z
  .strictObject({
    name: fieldName,
    type: z.enum(INPUT_TYPES).default("string"),
    description: z.string().max(1000).optional(),
    required: z.boolean().default(false),
    secret: z.boolean().default(false),
    default: inputValue.optional(),
  })
  .superRefine((i, ctx) => {
    if (i.default !== undefined && typeof i.default !== i.type)
      ctx.addIssue({ code: "custom", path: ["default"], message: `the default of a ${i.type} input must be a ${i.type}` });
  });
export type PluginInput = z.infer<typeof pluginInput>;

export const pluginStep = z
  .strictObject({
    name: fieldName,
    description: z.string().max(2000).optional(),
    inputs: z.array(pluginInput).max(PLUGIN_LIMITS.inputsPerStep).default([]),
    outputs: z.array(z.strictObject({ name: fieldName, description: z.string().max(1000).optional() })).max(100).default([]),
    run: z.array(z.string().min(1).max(4096)).min(1).max(100),
  })
  .superRefine((s, ctx) => {
    const dup = duplicate(s.inputs.map((i) => i.name));
    if (dup) ctx.addIssue({ code: "custom", path: ["inputs"], message: `input '${dup}' is declared twice` });
    const dupOut = duplicate(s.outputs.map((o) => o.name));
    if (dupOut) ctx.addIssue({ code: "custom", path: ["outputs"], message: `output '${dupOut}' is declared twice` });
  });
export type PluginStep = z.infer<typeof pluginStep>;

export const pluginManifest = z
  .strictObject({
    id: pluginId,
    version: semver,
    name: z.string().min(1).max(200),
    description: z.string().max(4000).default(""),
    steps: z.array(pluginStep).min(1).max(PLUGIN_LIMITS.stepsPerPlugin),
  })
  .superRefine((m, ctx) => {
    const dup = duplicate(m.steps.map((s) => s.name));
    if (dup) ctx.addIssue({ code: "custom", path: ["steps"], message: `step '${dup}' is declared twice` });
  });
export type PluginManifest = z.infer<typeof pluginManifest>;

function duplicate(names: string[]): string | null {
  const seen = new Set<string>();
  for (const n of names) {
    if (seen.has(n)) return n;
    seen.add(n);
  }
  return null;
}

// Semver precedence (§11): numbers compare numerically; a pre-release sorts before its
// release; build metadata is ignored. Returns <0, 0 or >0.
export function compareSemver(a: string, b: string): number {
  const parse = (v: string) => {
    const [core, pre] = v.split("+")[0].split(/-(.*)/s);
    return { nums: core.split(".").map(Number), pre: pre === undefined ? [] : pre.split(".") };
  };
  const x = parse(a);
  const y = parse(b);
  for (let i = 0; i < 3; i++) if (x.nums[i] !== y.nums[i]) return x.nums[i] - y.nums[i];
  if (x.pre.length === 0 || y.pre.length === 0) return y.pre.length - x.pre.length;
  for (let i = 0; i < Math.max(x.pre.length, y.pre.length); i++) {
    if (x.pre[i] === undefined) return -1;
    if (y.pre[i] === undefined) return 1;
    const xn = /^\d+$/.test(x.pre[i]);
    const yn = /^\d+$/.test(y.pre[i]);
    if (xn && yn && Number(x.pre[i]) !== Number(y.pre[i])) return Number(x.pre[i]) - Number(y.pre[i]);
    if (xn !== yn) return xn ? -1 : 1;
    if (x.pre[i] !== y.pre[i]) return x.pre[i] < y.pre[i] ? -1 : 1;
  }
  return 0;
}

// The environment variable an input is also given as: OUTPOST_INPUT_<NAME>, upper-cased,
// every character other than a letter or digit as '_'.
export function inputEnvName(name: string): string {
  return `OUTPOST_INPUT_${name.toUpperCase().replace(/[^A-Z0-9]/g, "_")}`;
}
