// docs/protocol.md §Logs: what the agent makes of the server's answer to a log chunk.
import { describe, expect, it } from "vitest";
import { CredentialRefusedError, HttpStatusError, NetworkError, ProtocolError } from "../errors.ts";
import { uploadOutcome } from "./upload-outcome.ts";

const answer = (status: number, body: unknown) => ({ status, body });

describe("log upload outcome", () => {
  it("goes on from the length the server holds", () => {
    expect(uploadOutcome(answer(200, { length: 262_144 }), 0)).toEqual({ kind: "stored", length: 262_144 });
    // a retried chunk the server held whole: still its length
    expect(uploadOutcome(answer(200, { length: 500 }), 100)).toEqual({ kind: "stored", length: 500 });
  });

  it("resumes at the server's length after a 409 gap", () => {
    expect(uploadOutcome(answer(409, { error: "offset 900 is beyond the 300 bytes the server holds", length: 300 }), 900)).toEqual({ kind: "gap", length: 300 });
  });

  it("retries with back-off a 409 that names the very offset sent (the log changed concurrently), instead of spinning", () => {
    const o = uploadOutcome(answer(409, { error: "the log changed concurrently too many times; retry", length: 300 }), 300);
    expect(o.kind).toBe("retry");
    expect(o.kind === "retry" && o.error).toBeInstanceOf(ProtocolError);
  });

  it("stops when the step has ended on the server (410) or its log is full (413)", () => {
    expect(uploadOutcome(answer(410, { error: "step s1 has ended", length: 42 }), 42)).toEqual({ kind: "closed", length: 42 });
    expect(uploadOutcome(answer(413, { error: "a step's log is limited to 16777216 bytes", length: 16_777_000 }), 16_777_000)).toEqual({
      kind: "too-large",
      reason: "HTTP 413: a step's log is limited to 16777216 bytes",
    });
    expect(uploadOutcome(answer(413, "<html>proxy: body too large</html>"), 0)).toEqual({ kind: "too-large", reason: "HTTP 413" });
  });

  it("retries an answer it cannot read: a 200, 409 or 410 without a length", () => {
    for (const status of [200, 409, 410]) {
      const o = uploadOutcome(answer(status, "<html>a proxy's page</html>"), 0);
      expect(o.kind, String(status)).toBe("retry");
      expect(o.kind === "retry" && o.error).toBeInstanceOf(ProtocolError);
    }
  });

  it("retries what may pass later and gives up on any other refusal", () => {
    const retried = [new NetworkError("PUT", "/x", new Error("reset")), new HttpStatusError("PUT", "/x", 503, null), new CredentialRefusedError("PUT", "/x", null)];
    for (const error of retried) expect(uploadOutcome({ error }, 0)).toEqual({ kind: "retry", error });
    const refused = new HttpStatusError("PUT", "/x", 404, { error: "step s9 is not one of this agent's steps" });
    expect(uploadOutcome({ error: refused }, 0)).toEqual({ kind: "rejected", error: refused });
  });
});
