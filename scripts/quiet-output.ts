// Offline, wrangler dev prints warnings that are true but useless here (it
// cannot reach workers.cloudflare.com for the Request.cf placeholder; local dev
// never fires crons, and the Durable Objects sweep instead — docs/protocol.md
// §Dispatch). They bury the lines a user needs, so the launcher drops them.
import { createInterface } from "node:readline";
import type { Readable, Writable } from "node:stream";

const NOISE_STARTS = [/Unable to fetch the `Request\.cf` object/, /Scheduled Workers are not automatically triggered/];
// Lines that belong to the block a noise line starts: stack frames, the
// getaddrinfo error, indented hints, blank lines.
const CONTINUATION = /^(\s+\S|\s*$|Error: getaddrinfo ENOTFOUND)/;

export function isNoiseStart(line: string) {
  return NOISE_STARTS.some((re) => re.test(line));
}

export function pipeWithoutNoise(from: Readable, to: Writable) {
  let inNoise = false;
  createInterface({ input: from, crlfDelay: Infinity }).on("line", (line) => {
    if (isNoiseStart(line)) {
      inNoise = true;
      return;
    }
    if (inNoise && CONTINUATION.test(line)) return;
    inNoise = false;
    to.write(line + "\n");
  });
}
