// file-template / render: fills a text template and writes it atomically.
// docs/plugins.md §Shipped plug-ins.
//
// Placeholders: `{{ vars.NAME }}` (from the `variables` input) and `{{ env.NAME }}` (from
// the step's environment), spaces inside the braces optional. One pass, not recursive:
// a value containing `{{ … }}` is written as it is. Any other `{{ … }}` (Helm, Jinja,
// mustache…) is left as written, so such files can be rendered too.
//
// Exit codes: 0 written; 1 the template cannot be read, names an unknown placeholder,
// or the destination cannot be written (it is then left as it was); 2 invalid inputs.
import { createHash, randomBytes } from "node:crypto";
import { closeSync, fchmodSync, fsyncSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";

const PLACEHOLDER = /\{\{\s*(?:vars\.([A-Za-z0-9_-]+)|env\.([A-Za-z_][A-Za-z0-9_]*))\s*\}\}/g;
const OTHER_BRACES = /\{\{[^{}\n]*\}\}/g;

class StepError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}
const invalid = (message) => new StepError(message, 2);
const failed = (message) => new StepError(message, 1);

function readInputs() {
  const file = process.env.OUTPOST_INPUTS;
  if (!file) throw invalid("OUTPOST_INPUTS is not set: run this step through an Outpost agent, or point OUTPOST_INPUTS at a JSON file of inputs");
  let inputs;
  try {
    inputs = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    // Not the parser's message: it quotes the text, and inputs may hold secrets.
    throw invalid(`cannot read the inputs file ${file}${e.code ? ` (${e.code})` : ": not valid JSON"}`);
  }
  if (inputs === null || typeof inputs !== "object" || Array.isArray(inputs)) throw invalid("the inputs file does not hold a JSON object");
  return inputs;
}

const optionalString = (inputs, name) => {
  const v = inputs[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw invalid(`${name} must be a string`);
  return v;
};

function parseInputs(inputs) {
  const template = optionalString(inputs, "template");
  const content = optionalString(inputs, "content");
  const destination = optionalString(inputs, "destination");
  if (!template) throw invalid("template is required: a file path, or inline (with content)");
  if (!destination) throw invalid("destination is required");
  if (template === "inline" && content === undefined) throw invalid("template is inline but content is not given");
  if (template !== "inline" && content !== undefined) throw invalid("content is only used with template: inline (a file named inline is ./inline)");

  const modeText = optionalString(inputs, "mode") ?? "0644";
  if (!/^[0-7]{3,4}$/.test(modeText)) throw invalid(`mode must be octal permissions like 0644, not ${JSON.stringify(modeText)}`);

  return { template, content, destination, mode: Number.parseInt(modeText, 8), modeText, variables: parseVariables(optionalString(inputs, "variables")) };
}

function parseVariables(text) {
  if (text === undefined || text.trim() === "") return new Map();
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Without the parser's message: variables may hold secrets (`${{ secrets.X }}`).
    throw invalid("variables is not valid JSON: give a JSON object text, e.g. {\"port\": 8080}");
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw invalid("variables must be a JSON object, e.g. {\"port\": 8080}");
  const vars = new Map();
  for (const [k, v] of Object.entries(parsed)) {
    if (typeof v !== "string" && typeof v !== "number" && typeof v !== "boolean") throw invalid(`variable ${k} must be a string, number or boolean`);
    vars.set(k, String(v));
  }
  return vars;
}

const lineAt = (text, index) => text.slice(0, index).split("\n").length;

// Returns the rendered text, or lists every placeholder without a value (each once,
// with the line it is first on) so one run shows everything to fix.
function render(text, vars, env) {
  const unknown = new Map();
  const out = text.replace(PLACEHOLDER, (whole, varName, envName, index) => {
    const value = varName !== undefined ? vars.get(varName) : env[envName];
    if (value !== undefined) return value;
    const key = varName !== undefined ? `{{ vars.${varName} }}` : `{{ env.${envName} }}`;
    if (!unknown.has(key)) unknown.set(key, lineAt(text, index));
    return whole;
  });
  if (unknown.size > 0) {
    const list = [...unknown].map(([k, line]) => `${k} (line ${line})`).join(", ");
    throw failed(`unknown placeholder${unknown.size === 1 ? "" : "s"}: ${list} (vars. come from the variables input, env. from the step's environment)`);
  }
  return out;
}

// Other `{{ … }}` are kept on purpose, but a typo (`{{ var.x }}`) looks the same: say so.
function noteOthers(text) {
  const others = [...new Set(text.replace(PLACEHOLDER, "").match(OTHER_BRACES) ?? [])];
  if (others.length === 0) return;
  const shown = others.slice(0, 5).join(", ");
  console.log(`note: left as written (not a vars. or env. placeholder): ${shown}${others.length > 5 ? ` and ${others.length - 5} more` : ""}`);
}

// Temp file in the destination's folder (same file system, so the rename is atomic),
// with its final mode before it gets its name: readers see the old file or the whole
// new one, never a part, and never wider permissions than asked.
function writeAtomically(dest, data, mode) {
  const dir = dirname(dest);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw failed(`cannot create the folder ${dir}: ${e.message}`);
  }
  let existing = null;
  try {
    existing = lstatSync(dest);
  } catch {}
  if (existing?.isDirectory()) throw failed(`destination ${dest} is a folder`);

  const tmp = `${dir}/.${basename(dest)}.outpost-${process.pid}-${randomBytes(4).toString("hex")}.tmp`;
  try {
    const fd = openSync(tmp, "wx", 0o600);
    try {
      writeSync(fd, data);
      fchmodSync(fd, mode); // the umask does not apply to chmod: the mode is exactly as asked
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, dest);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw failed(`cannot write ${dest}: ${e.message}`);
  }
}

function writeOutputs(outputs) {
  const file = process.env.OUTPOST_OUTPUTS;
  if (!file) return; // run by hand: nothing records outputs
  try {
    writeFileSync(file, JSON.stringify(outputs) + "\n");
  } catch (e) {
    throw failed(`cannot write the outputs file ${file}: ${e.message}`);
  }
}

function main() {
  const opts = parseInputs(readInputs());
  let text;
  if (opts.template === "inline") text = opts.content;
  else {
    const path = resolve(process.cwd(), opts.template);
    try {
      text = readFileSync(path, "utf8");
    } catch (e) {
      throw failed(`cannot read the template ${path}: ${e.code === "ENOENT" ? "no such file" : e.message}`);
    }
  }
  const rendered = render(text, opts.variables, process.env);
  noteOthers(text);

  const dest = resolve(process.cwd(), opts.destination);
  const data = Buffer.from(rendered, "utf8");
  writeAtomically(dest, data, opts.mode);
  const sha256 = createHash("sha256").update(data).digest("hex");
  writeOutputs({ path: dest, bytes: String(data.length), sha256 });
  const source = opts.template === "inline" ? "inline content" : opts.template;
  console.log(`rendered ${source} → ${dest} (${data.length} bytes, mode ${opts.modeText}, sha256 ${sha256})`);
}

try {
  main();
} catch (e) {
  if (!(e instanceof StepError)) throw e;
  console.error(`render: ${e.message}`);
  process.exitCode = e.code;
}
