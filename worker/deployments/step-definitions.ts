// Turns the steps of a POST /api/v1/deployments into what is stored and sent: a
// plug-in step is pinned to a version (the latest when none is named) and checked
// against its manifest — the step exists, required inputs are given, values have the
// declared types, secret inputs come from secrets — and every secret an expression
// names must exist. Everything refused here is a 422 that names the problem.
import { sql } from "drizzle-orm";
import type { PluginStepSpec, StepSpec } from "../../schema/api.ts";
import { findReferences, isSingleExpression, secretNamesIn } from "../../schema/expressions.ts";
import { compareSemver, pluginManifest, type PluginManifest, type PluginStep } from "../../schema/plugin.ts";
import type { StepType } from "../../schema/steps.ts";
import type { Db } from "../../d1/db.ts";
import { HttpError } from "../http-errors.ts";

export type StepDefinition = {
  spec: StepSpec;
  type: StepType;
  command: string; // "" for a plug-in step
  definition: string | null; // JSON (d1/dispatch-targets.ts StepToDispatch)
  plugin: { id: string; version: string } | null;
};

// The secrets a step's expressions name (its command, or its inputs' text values).
const secretsOf = (s: StepSpec): string[] =>
  s.type === "shell" ? secretNamesIn(s.command) : [...new Set(Object.values(s.inputs).flatMap((v) => (typeof v === "string" ? secretNamesIn(v) : [])))];

type PluginVersion = { version: string; sha256: string; manifest: PluginManifest };

export async function defineSteps(db: Db, steps: StepSpec[]): Promise<StepDefinition[]> {
  const seen = new Set<string>();
  for (const s of steps) {
    if (seen.has(s.name)) throw new HttpError(422, `step names must be unique within a deployment: '${s.name}' is used twice (expressions name steps)`);
    seen.add(s.name);
  }
  const versions = await loadPlugins(db, [...new Set(steps.flatMap((s) => (s.type === "plugin" ? [s.plugin] : [])))]);
  const secrets = await existingSecrets(db, steps);
  return steps.map((spec, i) => {
    const where = `step ${i + 1} ('${spec.name}')`;
    const names = secretsOf(spec);
    const missing = names.filter((n) => !secrets.has(n));
    if (missing.length > 0) throw new HttpError(422, `${where} uses unknown secret${missing.length > 1 ? "s" : ""}: ${missing.join(", ")}`, { unknownSecrets: missing });
    const secretsField = names.length > 0 ? { secrets: names } : {};
    if (spec.type === "shell") {
      return { spec, type: "shell", command: spec.command, definition: names.length ? JSON.stringify(secretsField) : null, plugin: null };
    }
    const pinned = pickVersion(versions.get(spec.plugin) ?? [], spec, where);
    const step = pinned.manifest.steps.find((s) => s.name === spec.step);
    if (!step) {
      throw new HttpError(422, `${where}: plug-in ${spec.plugin}@${pinned.version} has no step '${spec.step}' (it has: ${pinned.manifest.steps.map((s) => s.name).join(", ")})`);
    }
    checkInputs(step, spec, where);
    const definition = {
      plugin: { id: spec.plugin, version: pinned.version, sha256: pinned.sha256 },
      step: step.name,
      run: step.run,
      inputs: spec.inputs,
      inputDefs: step.inputs,
      outputs: step.outputs.map((o) => o.name),
      ...secretsField,
    };
    return { spec, type: "plugin", command: "", definition: JSON.stringify(definition), plugin: { id: spec.plugin, version: pinned.version } };
  });
}

async function loadPlugins(db: Db, ids: string[]): Promise<Map<string, PluginVersion[]>> {
  const out = new Map<string, PluginVersion[]>();
  if (ids.length === 0) return out;
  const rows = await db.all<{ id: string; version: string; sha256: string; manifest: string }>(
    sql`SELECT id, version, sha256, manifest FROM plugins WHERE id IN (SELECT value FROM json_each(${JSON.stringify(ids)}))`,
  );
  for (const r of rows) {
    const list = out.get(r.id) ?? [];
    list.push({ version: r.version, sha256: r.sha256, manifest: pluginManifest.parse(JSON.parse(r.manifest)) });
    out.set(r.id, list);
  }
  return out;
}

function pickVersion(versions: PluginVersion[], spec: PluginStepSpec, where: string): PluginVersion {
  if (versions.length === 0) throw new HttpError(422, `${where}: unknown plug-in '${spec.plugin}'`);
  if (spec.version === undefined) return [...versions].sort((a, b) => compareSemver(b.version, a.version))[0];
  const found = versions.find((v) => v.version === spec.version);
  if (!found) throw new HttpError(422, `${where}: plug-in '${spec.plugin}' has no version ${spec.version}`);
  return found;
}

function checkInputs(step: PluginStep, spec: PluginStepSpec, where: string): void {
  const declared = new Map(step.inputs.map((i) => [i.name, i]));
  for (const name of Object.keys(spec.inputs)) {
    if (!declared.has(name)) throw new HttpError(422, `${where}: step '${step.name}' has no input '${name}' (it has: ${[...declared.keys()].join(", ") || "none"})`);
  }
  for (const def of step.inputs) {
    const value = spec.inputs[def.name];
    if (value === undefined) {
      if (def.required && def.default === undefined) throw new HttpError(422, `${where}: input '${def.name}' is required`);
      continue;
    }
    // A secret input must come from a secret: a literal would be stored in clear.
    if (def.secret && !(typeof value === "string" && isSingleExpression(value) && findReferences(value)[0]?.kind === "secret")) {
      throw new HttpError(422, `${where}: input '${def.name}' is secret: give it as \${{ secrets.NAME }}`);
    }
    // An expression is checked against the type when the agent resolves it.
    const isExpression = typeof value === "string" && findReferences(value).length > 0;
    if (!isExpression && typeof value !== def.type) {
      throw new HttpError(422, `${where}: input '${def.name}' must be a ${def.type}, got ${JSON.stringify(value).slice(0, 100)}`);
    }
  }
}

async function existingSecrets(db: Db, steps: StepSpec[]): Promise<Set<string>> {
  const names = [...new Set(steps.flatMap(secretsOf))];
  if (names.length === 0) return new Set();
  const rows = await db.all<{ name: string }>(sql`SELECT name FROM secrets WHERE name IN (SELECT value FROM json_each(${JSON.stringify(names)}))`);
  return new Set(rows.map((r) => r.name));
}
