import { describe, expect, it } from "vitest";
import { JournalError } from "./worker/journal.ts";
import {
  AgentError,
  CommandHeadBehindError,
  CredentialRefusedError,
  describeCause,
  HttpStatusError,
  NetworkError,
  ProtocolError,
  RedirectError,
  shouldRetry,
} from "./errors.ts";

describe("errors", () => {
  it("describe their cause once", () => {
    const refused = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    const net = new NetworkError("GET", "http://127.0.0.1:1/x", new TypeError("fetch failed", { cause: refused }));
    expect(describeCause(net)).toBe("GET http://127.0.0.1:1/x: fetch failed: ECONNREFUSED");
    const wrapped = new AgentError("journal storeCommands failed", {}, { cause: new Error("SQLITE_FULL") });
    expect(describeCause(wrapped)).toBe("journal storeCommands failed: SQLITE_FULL");
  });

  it("carry the server's error", () => {
    const e = new HttpStatusError("POST", "/agent/v1/reports", 422, { error: "step s1 is not this agent's" });
    expect(e.message).toBe("POST /agent/v1/reports: HTTP 422: step s1 is not this agent's");
    expect(e.serverError).toBe("step s1 is not this agent's");
    const behind = new CommandHeadBehindError("GET", "/agent/v1/commands?after=7&wait=0", 7, { error: "after 7 > head 3", head: 3 });
    expect(behind.head).toBe(3);
    expect(behind.message).toMatch(/HTTP 409: after 7 > head 3 \(the server's command head 3 is behind this agent's lastSeq 7: .* lastSeq is kept; retrying\)/);
  });
});

// docs/protocol.md §Reports (errors), §Commands (409), §Logs, §Revoke; docs/agent-api.md "Errors".
describe("shouldRetry: retry with back-off, or not", () => {
  const http = (status: number, body: unknown = { error: "no" }) => new HttpStatusError("POST", "/agent/v1/reports", status, body);

  it("retries what may pass by itself later", () => {
    const later = [
      new NetworkError("GET", "/x", new Error("reset")),
      http(500),
      http(503, "busy"),
      http(408),
      http(429, null),
      new CredentialRefusedError("POST", "/x", { error: "who?" }), // a proxy's 401, a reset server
      new RedirectError("GET", "/x", 307, "https://elsewhere"), // a proxy being fixed
      new ProtocolError("unexpected pull answer: head: invalid"),
      new CommandHeadBehindError("GET", "/agent/v1/commands?after=5", 5, { error: "x", head: 2 }), // never lower lastSeq: wait
    ];
    for (const e of later) expect(shouldRetry(e), e.message).toBe(true);
  });

  it("does not retry with back-off what the server refused, the revoked 401, or what is not an HTTP failure", () => {
    for (const status of [400, 403, 404, 409, 410, 413, 422]) expect(shouldRetry(http(status)), String(status)).toBe(false);
    // Only the agent's own typed errors are judged by status: anything else is not retried.
    expect(shouldRetry({ status: 503 })).toBe(false);
    expect(shouldRetry(new Error("HTTP 503"))).toBe(false);
    // the server's explicit revoked answer is a plain HttpStatusError 401 (the worker stops on it)
    expect(shouldRetry(new HttpStatusError("GET", "/x", 401, { error: "revoked", code: "agent-revoked" }))).toBe(false);
    expect(shouldRetry(new JournalError("journal storeCommands failed"))).toBe(false);
    expect(shouldRetry(new Error("a bug"))).toBe(false);
  });
});
