// docs/protocol.md §Reports (batches, order, a finished report waits for its output: §Logs).
import { describe, expect, it } from "vitest";
import { STEP_REASON_MAX } from "../../schema/steps.ts";
import { finishedReport, startedReport } from "./reports.ts";
import { onPostFailure, sendablePrefix } from "./report-sender.ts";
import { CredentialRefusedError, HttpStatusError, NetworkError, ProtocolError, RedirectError } from "../errors.ts";
import type { OutboxEntry } from "./journal.ts";

const entry = (order: number, report: OutboxEntry["report"], createdAt = 0): OutboxEntry => ({ order, id: report.id, report, createdAt });
const ok = { status: "succeeded" as const, exitCode: 0, reason: null };
const ids = (r: { batch: OutboxEntry[] }) => r.batch.map((e) => e.id);
const always = async () => true;

describe("sendable prefix of the outbox", () => {
  it("holds back a step-finished report until its log is delivered, and what follows it", async () => {
    const outbox = [entry(1, startedReport("a", "d", 1)), entry(2, finishedReport("a", "d", ok, 2)), entry(3, startedReport("b", "d", 3))];
    expect(ids(await sendablePrefix(outbox, always, 1_000))).toEqual(["a:started", "a:finished", "b:started"]);
    const held = await sendablePrefix(outbox, async (s) => s !== "a", 1_000);
    expect(ids(held)).toEqual(["a:started"]);
    expect(held.retryInMs).toBeNull(); // the log uploader kicks the sender when done
  });

  it("holds back only its own deployment: another deployment's reports go on (no head-of-line blocking)", async () => {
    const outbox = [
      entry(1, startedReport("big", "d1", 1)),
      entry(2, finishedReport("big", "d1", ok, 2)),
      entry(3, startedReport("next", "d1", 3)),
      entry(4, startedReport("noop", "d2", 4)),
      entry(5, finishedReport("noop", "d2", ok, 5)),
    ];
    const r = await sendablePrefix(outbox, async (s) => s !== "big", 1_000);
    expect(ids(r)).toEqual(["big:started", "noop:started", "noop:finished"]);
    expect(r.retryInMs).toBeNull();
    // A fresh started report holds its deployment only; the earliest hold says when to look again.
    const fresh = [entry(1, startedReport("a", "d1", 1), 990), entry(2, startedReport("b", "d2", 2), 985), entry(3, startedReport("c", "d3", 3), 0)];
    expect(await sendablePrefix(fresh, always, 1_000, 30)).toMatchObject({ batch: [{ id: "c:started" }], retryInMs: 15 });
  });

  it("holds a fresh step-started report briefly so a quick step's reports travel together", async () => {
    const fresh = [entry(1, startedReport("a", "d", 1), 990)];
    expect(await sendablePrefix(fresh, always, 1_000, 30)).toEqual({ batch: [], retryInMs: 20 });
    expect(ids(await sendablePrefix(fresh, always, 1_020, 30))).toEqual(["a:started"]);
    const quick = [...fresh, entry(2, finishedReport("a", "d", ok, 2), 995)];
    expect(ids(await sendablePrefix(quick, always, 1_000, 30))).toEqual(["a:started", "a:finished"]);
    const behindOld = [entry(1, startedReport("x", "d", 1), 0), ...fresh];
    expect(await sendablePrefix(behindOld, always, 1_000, 30)).toMatchObject({ batch: [{ id: "x:started" }], retryInMs: 20 });
  });

  it("builds reports with stable ids and clipped reasons", () => {
    const r = finishedReport("s1", "d1", { status: "failed", exitCode: 1, reason: "x".repeat(900) }, 5);
    expect(r.id).toBe("s1:finished");
    expect(r.type === "step-finished" && r.reason!.length).toBe(STEP_REASON_MAX);
  });
});

describe("what a failed post leads to", () => {
  const refused = (status: number) => new HttpStatusError("POST", "/agent/v1/reports", status, { error: "no" });
  it("splits a batch refused with 422 and rejects a single report refused with 422", () => {
    expect(onPostFailure(refused(422), 5)).toBe("split");
    expect(onPostFailure(refused(422), 1)).toBe("reject");
  });

  it("keeps every other refusal in the outbox: 400 and the like are held, never dropped", () => {
    for (const status of [400, 403, 404, 409, 413]) {
      expect(onPostFailure(refused(status), 1)).toBe("hold");
      expect(onPostFailure(refused(status), 5)).toBe("hold");
    }
  });

  it("backs off on what may pass later: network, 5xx, 429, a 401 that is not a revocation, a redirect, an unreadable answer", () => {
    const later = [new NetworkError("POST", "/x", new Error("reset")), refused(503), refused(429), new CredentialRefusedError("POST", "/x", { error: "who?" }),
      new RedirectError("POST", "/x", 307, "https://elsewhere"), new ProtocolError("too big")];
    for (const e of later) expect(onPostFailure(e, 3), e.message).toBe("back-off");
  });
});
