// A process that masks secrets in a stream: `node mask-filter.ts <masks-file> [<outputs-file>]`.
//
// Reads <masks-file> (a JSON array of strings: the secret values to mask), DELETES it
// at once — it holds secrets in clear and nothing else needs it — then copies stdin to
// stdout through agent/steps/mask.ts until stdin's end, and exits 0. A step whose
// command uses secrets has its output piped through it on the way to output.log, so
// the secrets never reach the disk or the server.
//
// With <outputs-file> (the step's OUTPOST_OUTPUTS), once stdin has ended — the step's
// command is over — that file is masked in place too (written aside, then renamed), so
// whatever reads it after the step's status exists finds no secret, even a worker that
// never held the secrets (it restarted while the step ran). A file that cannot be
// masked is removed: outputs are lost rather than shown.
//
// Exit 2 (with a message on stderr, no output) when the masks file cannot be read or
// is not an array of strings: passing output through unmasked is never the fallback.
// Exit 1 if reading stdin or writing stdout fails.
//
// It starts once per step that uses secrets, so it imports only node:fs and mask.ts
// (which imports nothing): no zod, no agent modules.
import { lstatSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createMasker, maskText } from "./mask.ts";

function readMasks(path: string | undefined): string[] {
  if (!path) fail(2, "usage: mask-filter.ts <masks-file>");
  let text: string | null = null;
  let readError: unknown = null;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    readError = e;
  }
  // Deleted whether or not it was readable: a copy of the secrets must not stay behind.
  rmSync(path, { force: true });
  if (text === null) fail(2, `cannot read the masks file ${path}: ${(readError as Error).message}`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // Not its parser's message: V8 quotes the text it failed on, i.e. a secret.
    fail(2, `the masks file ${path} is not JSON`);
  }
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) fail(2, `the masks file ${path} is not a JSON array of strings`);
  return value;
}

function fail(code: number, message: string): never {
  process.stderr.write(`outpost mask-filter: ${message}\n`);
  process.exit(code);
}

const OUTPUTS_MAX_BYTES = 1024 * 1024; // as agent/steps/outputs-file.ts reads at most

function maskOutputsFile(path: string, secrets: string[]): void {
  try {
    const st = lstatSync(path, { throwIfNoEntry: false });
    if (!st) return;
    if (!st.isFile() || st.size > OUTPUTS_MAX_BYTES) throw new Error(st.isFile() ? "too large" : "not a regular file");
    const tmp = `${path}.masking`;
    writeFileSync(tmp, maskText(readFileSync(path, "latin1"), secrets), { encoding: "latin1", mode: 0o600 });
    renameSync(tmp, path);
  } catch (e) {
    rmSync(path, { force: true, recursive: true });
    process.stdout.write(`outpost: the step's outputs file could not be masked (${(e as Error).message}); it was removed\n`);
  }
}

const secrets = readMasks(process.argv[2]);
const outputsFile = process.argv[3];
const masker = createMasker(secrets);
const { stdin, stdout } = process;

stdin.on("data", (chunk: Buffer) => {
  const out = masker.push(chunk);
  // Back-pressure: a slow reader of stdout (a full disk, a pipe) slows the step down
  // instead of growing this process's memory.
  if (out.length > 0 && !stdout.write(out)) {
    stdin.pause();
    stdout.once("drain", () => stdin.resume());
  }
});
stdin.on("end", () => {
  const rest = masker.end();
  if (outputsFile) maskOutputsFile(outputsFile, secrets);
  stdout.end(rest, () => process.exit(0));
});
stdin.on("error", (e) => fail(1, `cannot read stdin: ${e.message}`));
stdout.on("error", (e) => fail(1, `cannot write stdout: ${e.message}`));
