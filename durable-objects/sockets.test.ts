import { describe, expect, it } from "vitest";
import { closeReplyCode } from "./sockets.ts";

describe("closeReplyCode", () => {
  it("echoes 1000 and application codes, answers anything else with 1000", () => {
    for (const code of [1000, 3000, 4000, 4003, 4999]) expect(closeReplyCode(code), String(code)).toBe(code);
    // Codes that describe a close but never travel, reserved ones, and nonsense.
    for (const code of [1005, 1006, 1015, 1004, 1016, 2999, 0, 999, 5000, 1001, 1008]) expect(closeReplyCode(code), String(code)).toBe(1000);
  });
});
