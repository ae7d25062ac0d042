import { describe, expect, it } from "vitest";
import { canonicalJson } from "./canonical-json.ts";

// docs/protocol.md §Idempotent requests
describe("canonicalJson", () => {
  it("ignores key order and undefined fields, keeps array order", () => {
    expect(canonicalJson({ b: 1, a: [2, { d: 1, c: undefined }] })).toBe(canonicalJson({ a: [2, { d: 1 }], b: 1 }));
    expect(canonicalJson([1, 2])).not.toBe(canonicalJson([2, 1]));
  });
  it("is plain JSON with keys sorted, whatever order they came in", () => {
    expect(canonicalJson({ c: 3, a: 1, b: { z: [true, null], y: "x" } })).toBe('{"a":1,"b":{"y":"x","z":[true,null]},"c":3}');
    expect(canonicalJson({ b: 1, a: 2, c: 3 })).toBe(canonicalJson({ c: 3, b: 1, a: 2 }));
    expect(canonicalJson({ "k\"": "v" })).toBe('{"k\\"":"v"}');
  });
});
