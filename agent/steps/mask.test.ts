// Secret masking: whole strings, and streams cut at every possible place.
import { describe, expect, it } from "vitest";
import { seededRandom as rng } from "../../test/support/prng.ts";
import { createMasker, MASK, maskPatterns, maskText } from "./mask.ts";


function streamed(input: Buffer, secrets: string[], cuts: number[]): Buffer {
  const m = createMasker(secrets);
  const out: Buffer[] = [];
  let at = 0;
  for (const c of [...cuts, input.length]) {
    out.push(m.push(input.subarray(at, c)));
    at = c;
  }
  out.push(m.end());
  return Buffer.concat(out);
}

describe("maskText", () => {
  it("replaces every occurrence of every secret", () => {
    expect(maskText("user=admin pass=hunter2 again hunter2.", ["hunter2", "admin"])).toBe("user=*** pass=*** again ***.");
    expect(maskText("nothing here", ["hunter2"])).toBe("nothing here");
  });

  it("masks the longest secret first, so one containing another is masked whole", () => {
    expect(maskText("token abc123 and abc", ["abc", "abc123"])).toBe("token *** and ***");
    expect(maskText("abc123", ["abc", "abc123"])).not.toContain("123");
  });

  it("masks a multi-line secret whole and each of its lines alone", () => {
    const key = "-----BEGIN KEY-----\nAAAABBBB\r\nCCCCDDDD\n-----END KEY-----\n";
    const log = `writing\n${key}then line 2 alone: CCCCDDDD!`;
    const masked = maskText(log, [key]);
    expect(masked).toBe("writing\n***then line 2 alone: ***!");
    expect(maskText("AAAABBBB\nCCCCDDDD", [key])).toBe("***\n***");
    // Blank lines of a secret are not patterns: they would mask every blank line.
    expect(maskPatterns(["a\n\n  \nb"]).map(String)).toEqual(["a\n\n  \nb", "a", "b"]);
  });

  it("ignores empty secrets and works on UTF-8 text", () => {
    expect(maskText("abc", ["", "b"])).toBe("a***c");
    expect(maskText("abc", [])).toBe("abc");
    expect(maskText("mot de passe: héllo→wörld ok", ["héllo→wörld"])).toBe("mot de passe: *** ok");
  });
});

describe("createMasker", () => {
  it("holds back only a possible start of a secret, at most its length − 1 bytes", () => {
    const m = createMasker(["s3cr3t"]);
    expect(m.push(Buffer.from("abc s3c")).toString()).toBe("abc ");
    expect(m.push(Buffer.from("r3")).toString()).toBe("");
    expect(m.push(Buffer.from("t and s3cr")).toString()).toBe(`${MASK} and `);
    expect(m.push(Buffer.from("x")).toString()).toBe("s3crx");
    expect(m.push(Buffer.from("s3cr3")).toString()).toBe("");
    expect(m.end().toString()).toBe("s3cr3");
    expect(() => m.push(Buffer.from("more"))).toThrow(/after end/);
  });

  it("masks an occurrence split into single bytes, and a multi-byte character split in two", () => {
    const input = Buffer.from("→héllo→ x");
    const cutsEveryByte = Array.from({ length: input.length - 1 }, (_, i) => i + 1);
    expect(streamed(input, ["→héllo→"], cutsEveryByte).toString()).toBe(`${MASK} x`);
  });

  it("waits for a longer secret that may still match before masking a shorter one", () => {
    const m = createMasker(["abc", "abcdef"]);
    expect(m.push(Buffer.from("xabcde")).toString()).toBe("x");
    expect(m.push(Buffer.from("f!")).toString()).toBe(`${MASK}!`);
    expect(m.push(Buffer.from("abcd")).toString()).toBe("");
    expect(m.push(Buffer.from("X")).toString()).toBe(`${MASK}dX`);
    expect(m.end().length).toBe(0);
  });

  it("passes bytes through untouched when there is nothing to mask", () => {
    const m = createMasker(["", ""]);
    expect(m.push(Buffer.from([0, 255, 10])).equals(Buffer.from([0, 255, 10]))).toBe(true);
    expect(m.end().length).toBe(0);
  });

  it("gives maskText of the whole input for any chunking (random cases)", () => {
    const alphabet = "ab\n#%x";
    for (let seed = 1; seed <= 400; seed++) {
      const r = rng(seed);
      const word = (n: number) => Array.from({ length: n }, () => alphabet[Math.floor(r() * alphabet.length)]).join("");
      const secrets = Array.from({ length: 1 + Math.floor(r() * 4) }, () => word(1 + Math.floor(r() * 6)));
      const parts: string[] = [];
      for (let i = 0; i < 30; i++) parts.push(r() < 0.3 ? secrets[Math.floor(r() * secrets.length)] : word(Math.floor(r() * 4)));
      const input = Buffer.from(parts.join(""));
      const cuts = [...new Set(Array.from({ length: Math.floor(r() * 12) }, () => Math.floor(r() * input.length)))].sort((a, b) => a - b);
      const expected = maskText(input.toString(), secrets);
      expect(streamed(input, secrets, cuts).toString(), `seed ${seed}`).toBe(expected);
    }
  });

  it("never lets a secret through, for any chunking (random cases)", () => {
    // Each secret starts with a marker that appears nowhere else in any secret, so no
    // two occurrences can overlap: every occurrence must come out masked.
    for (let seed = 1; seed <= 400; seed++) {
      const r = rng(seed * 7919);
      const pick = (s: string) => s[Math.floor(r() * s.length)];
      const secrets = ["#", "%", "&"].map((marker) => marker + Array.from({ length: Math.floor(r() * 6) }, () => pick("ab")).join(""));
      let text = secrets.join(""); // at least one of each
      while (text.length < 200) text += r() < 0.25 ? secrets[Math.floor(r() * secrets.length)] : pick("ab#%&\n");
      const input = Buffer.from(text);
      const cuts = Array.from({ length: input.length - 1 }, (_, i) => i + 1).filter(() => r() < 0.2);
      const out = streamed(input, secrets, cuts).toString();
      for (const s of secrets) expect(out, `seed ${seed}: ${JSON.stringify(s)}`).not.toContain(s);
      expect(out.startsWith(MASK.repeat(3)), `seed ${seed}`).toBe(true);
    }
  });
});
