// Masking secret values in a step's output and in what it reports (outputs, reasons).
//
//   createMasker(secrets) → { push(chunk): Buffer; end(): Buffer }   streaming, bytes in → bytes out
//   maskText(text, secrets) → string                                 one whole string
//   maskPatterns(secrets) → Buffer[]                                 what is masked, longest first
//   MASK = "***"
//
// What is masked: every non-empty secret value, and each line of a multi-line secret
// on its own (a tool may print a key file line by line); a line that is empty or only
// blanks is not a pattern (it would mask every blank line). Every occurrence becomes
// "***". Matching is on UTF-8 bytes, leftmost first and, at one position, longest
// first — so a secret that contains another is masked whole, never as "***<rest>".
// (Two occurrences that overlap without one containing the other, e.g. "abc" and
// "cde" in "abcde", give "***de": the first is masked, the rest of the second stays.)
//
// Streaming: an occurrence may be split across chunks, so the masker holds back the
// shortest tail of what it has seen that could still be the start of a pattern — at
// most (longest pattern − 1) bytes — and releases it once the next chunk decides it
// (or at end()). push()+end() over any chunking of an input give exactly
// maskText(input).
//
// This module imports nothing: mask-filter.ts, which loads it, starts once per step.

export const MASK = "***";
const MASK_BYTES = Buffer.from(MASK);

// The byte patterns to mask, deduplicated, longest first.
export function maskPatterns(secrets: readonly string[]): Buffer[] {
  const texts = new Set<string>();
  for (const s of secrets) {
    if (s === "") continue;
    texts.add(s);
    if (!/[\r\n]/.test(s)) continue;
    for (const line of s.split(/\r\n|\r|\n/)) if (line.trim() !== "") texts.add(line);
  }
  return [...texts].map((t) => Buffer.from(t, "utf8")).sort((a, b) => b.length - a.length);
}

export type Masker = {
  // The masked bytes that can be released now (maybe empty: a possible start of a secret is held).
  push(chunk: Buffer): Buffer;
  // The rest, masked; the masker must not be used after it.
  end(): Buffer;
};

export function createMasker(secrets: readonly string[]): Masker {
  const patterns = maskPatterns(secrets);
  let held: Buffer = Buffer.alloc(0);
  let ended = false;
  const check = () => {
    if (ended) throw new Error("masker used after end()");
  };
  return {
    push(chunk) {
      check();
      if (patterns.length === 0) return chunk; // nothing to mask: nothing held back
      const data = held.length === 0 ? chunk : Buffer.concat([held, chunk]);
      const { out, rest } = scan(data, patterns, false);
      held = Buffer.from(rest); // a copy: the caller may reuse its chunk's memory
      return out;
    },
    end() {
      check();
      ended = true;
      if (patterns.length === 0) return Buffer.alloc(0);
      const { out } = scan(held, patterns, true);
      held = Buffer.alloc(0);
      return out;
    },
  };
}

export function maskText(text: string, secrets: readonly string[]): string {
  const patterns = maskPatterns(secrets);
  if (patterns.length === 0 || text === "") return text;
  return scan(Buffer.from(text, "utf8"), patterns, true).out.toString("utf8");
}

// Masks `data`. Unless `final`, stops at the first position from which the rest of
// `data` is a proper prefix of some pattern (more bytes could make it an occurrence)
// and returns that tail as `rest`, unmasked.
function scan(data: Buffer, patterns: readonly Buffer[], final: boolean): { out: Buffer; rest: Buffer } {
  const parts: Buffer[] = [];
  // next[k]: index of the next occurrence of pattern k at or after the position it was
  // searched from (-1: none in data). Refreshed lazily when the scan passes it.
  const next = patterns.map((p) => data.indexOf(p));
  let pos = 0;
  let hold = final ? data.length : firstOpenStart(data, patterns, 0);
  for (;;) {
    if (pos > hold) hold = firstOpenStart(data, patterns, pos); // a match ran past the old hold point
    let best = -1;
    for (let k = 0; k < patterns.length; k++) {
      if (next[k] !== -1 && next[k] < pos) next[k] = data.indexOf(patterns[k], pos);
      // Strictly smaller: at a tie the earlier (longer) pattern wins.
      if (next[k] !== -1 && (best === -1 || next[k] < next[best])) best = k;
    }
    if (best === -1 || next[best] >= hold) {
      parts.push(data.subarray(pos, hold));
      return { out: Buffer.concat(parts), rest: data.subarray(hold) };
    }
    parts.push(data.subarray(pos, next[best]), MASK_BYTES);
    pos = next[best] + patterns[best].length;
  }
}

// The first position q ≥ from where data[q..] is shorter than some pattern and equal
// to its beginning; data.length if there is none.
function firstOpenStart(data: Buffer, patterns: readonly Buffer[], from: number): number {
  const start = Math.max(from, data.length - patterns[0].length + 1);
  for (let q = start; q < data.length; q++) {
    const tail = data.length - q;
    for (const p of patterns) {
      if (p.length <= tail) break; // patterns are longest first: the rest are decided at q
      if (data.compare(p, 0, tail, q, data.length) === 0) return q;
    }
  }
  return data.length;
}
