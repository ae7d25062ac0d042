// A process that masks secrets in a stream: `node mask-filter.ts <masks-file>`.
//
// Reads <masks-file> (a JSON array of strings: the secret values to mask), DELETES it
// at once — it holds secrets in clear and nothing else needs it — then copies stdin to
// stdout through agent/steps/mask.ts until stdin's end, and exits 0. A step whose
// command uses secrets has its output piped through it on the way to output.log, so
// the secrets never reach the disk or the server.
//
// Exit 2 (with a message on stderr, no output) when the masks file cannot be read or
// is not an array of strings: passing output through unmasked is never the fallback.
// Exit 1 if reading stdin or writing stdout fails.
//
// It starts once per step that uses secrets, so it imports only node:fs and mask.ts
// (which imports nothing): no zod, no agent modules.
import { readFileSync, rmSync } from "node:fs";
import { createMasker } from "./mask.ts";

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

const masker = createMasker(readMasks(process.argv[2]));
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
  stdout.end(masker.end(), () => process.exit(0));
});
stdin.on("error", (e) => fail(1, `cannot read stdin: ${e.message}`));
stdout.on("error", (e) => fail(1, `cannot write stdout: ${e.message}`));
