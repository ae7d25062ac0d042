import { describe, expect, it } from "vitest";
import { canonicalJson } from "./canonical-json.ts";

// docs/protocol.md §Idempotent requests
describe("canonicalJson", () => {
  it("ignores key order and undefined fields, keeps array order", () => {
    expect(canonicalJson({ b: 1, a: [2, { d: 1, c: undefined }] })).toBe(canonicalJson({ a: [2, { d: 1 }], b: 1 }));
    expect(canonicalJson([1, 2])).not.toBe(canonicalJson([2, 1]));
  });
});
