import { describe, expect, it } from "vitest";
import { AgentError, describeCause, HttpError, isTransient, NetworkError } from "./errors.ts";

describe("errors", () => {
  it("describe their cause once", () => {
    const refused = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    const net = new NetworkError("GET", "http://127.0.0.1:1/x", new TypeError("fetch failed", { cause: refused }));
    expect(describeCause(net)).toBe("GET http://127.0.0.1:1/x: fetch failed: ECONNREFUSED");
    const wrapped = new AgentError("journal storeCommands failed", {}, { cause: new Error("SQLITE_FULL") });
    expect(describeCause(wrapped)).toBe("journal storeCommands failed: SQLITE_FULL");
  });

  it("carry the server's error and tell transient from permanent", () => {
    const e = new HttpError("POST", "/agent/v1/reports", 422, { error: "step s1 is not this agent's" });
    expect(e.message).toBe("POST /agent/v1/reports: HTTP 422: step s1 is not this agent's");
    expect(isTransient(e)).toBe(false);
    expect(isTransient(new HttpError("GET", "/x", 503, "busy"))).toBe(true);
    expect(isTransient(new HttpError("GET", "/x", 429, null))).toBe(true);
    expect(isTransient(new NetworkError("GET", "/x", new Error("reset")))).toBe(true);
  });
});
