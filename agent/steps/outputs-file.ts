// Reading the outputs a step wrote to its OUTPOST_OUTPUTS file.
//
//   readOutputs(path, { declared, secrets }) → { outputs: Record<string,string>; problems: string[] }
//
// The step may write the file in either form:
//   - a JSON object: {"version": "1.2.3", "count": 3, "ok": true}; strings, finite
//     numbers and booleans become text, anything else (null, objects, arrays) is a problem;
//   - `key=value` lines: the key is what precedes the first '=' (blanks around it
//     trimmed), the value everything after it (a trailing \r dropped); blank lines and
//     lines starting with '#' are ignored; a line without '=' is a problem; a key
//     written twice keeps its last value.
// The file is JSON when its first non-blank character is '{'.
//
// Kept, in the file's order: keys matching [A-Za-z0-9_-]{1,64} (LIMITS.outputKeyBytes),
// only those in `declared` when it is not null (a plug-in step reports its declared
// outputs only; a shell step any key), at most LIMITS.outputsPerStep keys, and values
// totalling at most LIMITS.outputsBytesPerStep bytes (UTF-8): a value that does not fit
// is dropped, later smaller ones may still be kept. Every value is masked with the
// step's secrets before it is counted and kept. Each dropped key is a problem; the
// problems never quote values (they may hold secrets) and are at most MAX_PROBLEMS lines.
//
// An absent file is no outputs and no problem. A file that is not a regular file (a
// FIFO would block the worker, a directory cannot be read) or larger than
// MAX_FILE_BYTES is a problem, nothing is read. Unexpected I/O errors are thrown.
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { LIMITS } from "../../schema/limits.ts";
import { maskText } from "./mask.ts";

// Far beyond what the limits let through; a larger file is a mistake, not outputs.
export const MAX_FILE_BYTES = 1024 * 1024;
export const MAX_PROBLEMS = 20;
const KEY = new RegExp(`^[A-Za-z0-9_-]{1,${LIMITS.outputKeyBytes}}$`);

export type OutputsResult = { outputs: Record<string, string>; problems: string[] };
export type ReadOutputsOptions = { declared: readonly string[] | null; secrets: readonly string[] };

export function readOutputs(path: string, opts: ReadOutputsOptions): OutputsResult {
  const text = readSmallFile(path);
  if (text === null) return { outputs: {}, problems: [] };
  if (typeof text !== "string") return { outputs: {}, problems: [text.problem] };
  const problems: string[] = [];
  const entries = /^\s*\{/.test(text) ? parseJson(text, problems) : parseLines(text, problems);
  const outputs = keep(entries, opts, problems);
  return { outputs, problems: capProblems(problems.map((p) => maskText(p, opts.secrets))) };
}

type Entry = { key: string; value: string };

function parseJson(text: string, problems: string[]): Entry[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    // Only where: V8's message quotes the text around the error, which may hold a
    // secret cut where masking no longer recognises it.
    const at = /at position \d+/.exec((e as Error).message)?.[0];
    problems.push(`the outputs file is not valid JSON${at ? ` (${at})` : ""}`);
    return [];
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    problems.push("the outputs file must hold a JSON object");
    return [];
  }
  const entries: Entry[] = [];
  for (const [key, v] of Object.entries(value)) {
    if (typeof v === "string") entries.push({ key, value: v });
    else if (typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v))) entries.push({ key, value: String(v) });
    else problems.push(`output '${quoteKey(key)}' dropped: only strings, numbers and booleans are kept, it is ${describe(v)}`);
  }
  return entries;
}

function parseLines(text: string, problems: string[]): Entry[] {
  const byKey = new Map<string, string>(); // a Map keeps first-seen order; the last value wins
  const lines = text.split("\n");
  lines.forEach((raw, i) => {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (line.trim() === "" || line.trimStart().startsWith("#")) return;
    const eq = line.indexOf("=");
    if (eq === -1) {
      problems.push(`line ${i + 1} of the outputs file has no '=' (expected key=value)`);
      return;
    }
    byKey.set(line.slice(0, eq).trim(), line.slice(eq + 1));
  });
  return [...byKey].map(([key, value]) => ({ key, value }));
}

function keep(entries: Entry[], opts: ReadOutputsOptions, problems: string[]): Record<string, string> {
  const outputs = new Map<string, string>(); // not a plain object: a key may be "__proto__"
  const declared = opts.declared === null ? null : new Set(opts.declared);
  let count = 0;
  let bytes = 0;
  for (const { key, value } of entries) {
    if (!KEY.test(key)) {
      problems.push(`output '${quoteKey(key)}' dropped: a key is 1-${LIMITS.outputKeyBytes} letters, digits, '_' or '-'`);
      continue;
    }
    if (declared !== null && !declared.has(key)) {
      problems.push(`output '${key}' dropped: the step does not declare it`);
      continue;
    }
    if (count >= LIMITS.outputsPerStep) {
      problems.push(`output '${key}' dropped: at most ${LIMITS.outputsPerStep} outputs per step`);
      continue;
    }
    const masked = maskText(value, opts.secrets);
    const size = Buffer.byteLength(masked, "utf8");
    if (bytes + size > LIMITS.outputsBytesPerStep) {
      problems.push(`output '${key}' dropped: its ${size} bytes would take the step's outputs past ${LIMITS.outputsBytesPerStep} bytes`);
      continue;
    }
    outputs.set(key, masked);
    count++;
    bytes += size;
  }
  return Object.fromEntries(outputs); // own data properties, whatever the key
}

// The file's text; null when absent; a problem when it is not a small regular file.
// Opened without following a symlink's last component and without blocking on a FIFO.
function readSmallFile(path: string): string | null | { problem: string } {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return null;
    if (code === "ELOOP") return { problem: "the outputs file is a symbolic link: not read" };
    if (code === "EISDIR") return { problem: "the outputs file is a directory: not read" };
    throw e;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return { problem: "the outputs file is not a regular file: not read" };
    if (st.size > MAX_FILE_BYTES) return { problem: `the outputs file is ${st.size} bytes, more than ${MAX_FILE_BYTES}: not read` };
    const buf = Buffer.alloc(st.size);
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, got);
      if (n === 0) break; // shrank meanwhile
      got += n;
    }
    return buf.subarray(0, got).toString("utf8");
  } finally {
    closeSync(fd);
  }
}

function quoteKey(key: string): string {
  const printable = key.replace(/[\x00-\x1f\x7f]/g, "?");
  return printable.length > LIMITS.outputKeyBytes ? `${printable.slice(0, LIMITS.outputKeyBytes)}…` : printable;
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "number") return "a number that is not finite";
  return typeof v === "object" ? "an object" : typeof v;
}

function capProblems(problems: string[]): string[] {
  if (problems.length <= MAX_PROBLEMS) return problems;
  return [...problems.slice(0, MAX_PROBLEMS - 1), `… and ${problems.length - MAX_PROBLEMS + 1} more problems`];
}
