// docs/protocol.md §Resync, agent side: the pure decision, then its effect on a
// real journal file.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { createClient } from "@libsql/client";
import { createLogger } from "../log.ts";
import { Journal } from "./journal.ts";
import { serverMessage, type Command } from "../../schema/agent-api.ts";
import { NO_RECORD_REASON } from "./reports.ts";
import { applyResync, planResync, type StepFact } from "./resync.ts";

const facts = (o: Record<string, StepFact>) => new Map(Object.entries(o));
const welcome = (w: Partial<{ head: number; acked: number; applied: string[]; expecting: string[] }>) => ({
  head: 0, acked: 0, applied: [], expecting: [], ...w,
});

describe("§Resync: planResync", () => {
  it("drops only the applied reports this hello named, and pulls when the head is ahead", () => {
    const p = planResync({ lastSeq: 3, reports: ["a:started", "a:finished"] }, welcome({ head: 5, acked: 3, applied: ["a:started", "zz:finished"] }), facts({}));
    expect(p).toEqual({ deleteApplied: ["a:started"], resend: [], interrupt: [], unfinished: [], pull: true, journalBehind: false });
    expect(planResync({ lastSeq: 5, reports: [] }, welcome({ head: 5 }), facts({})).pull).toBe(false);
  });

  it("re-sends an ended step's result only when its report left the outbox (or is being dropped as applied)", () => {
    const p = planResync(
      { lastSeq: 2, reports: ["b:finished"] },
      welcome({ head: 2, applied: ["b:finished"], expecting: ["a", "b", "c", "d", "e"] }),
      facts({
        a: { state: "succeeded", finishedReportQueued: false }, // acked, then lost by the server: rebuild
        b: { state: "failed", finishedReportQueued: true }, // inconsistent answer: re-send rather than lose it
        c: { state: "succeeded", finishedReportQueued: true }, // still queued: the sender posts it
        d: { state: "running", finishedReportQueued: false },
        e: undefined, // the journal never heard of it
      }),
    );
    expect(p.resend).toEqual(["a", "b"]);
    expect(p.unfinished).toEqual(["d"]);
    expect(p.interrupt).toEqual(["e"]);
  });

  it("notices a journal behind the server's acknowledgement (the pull then ends those commands as lost)", () => {
    expect(planResync({ lastSeq: 1, reports: [] }, welcome({ head: 4, acked: 4 }), facts({}))).toMatchObject({ journalBehind: true, pull: true });
    expect(planResync({ lastSeq: 4, reports: [] }, welcome({ head: 4, acked: 4 }), facts({})).journalBehind).toBe(false);
  });

  it("takes the welcome exactly as schema/agent-api.ts defines it: the resync fields are required", () => {
    expect(serverMessage.safeParse({ type: "welcome", agentId: "x", head: 2 }).success).toBe(false);
    expect(serverMessage.parse({ type: "welcome", agentId: "x", head: 2, acked: 1, applied: [], expecting: ["s"] })).toMatchObject({ acked: 1, expecting: ["s"] });
  });
});

const cmd = (seq: number, stepIds: string[]): Command => ({
  seq, type: "deploy", id: `cmd-${seq}`, deploymentId: `dep-${seq}`, agentLostAfterSeconds: 60,
  steps: stepIds.map((stepId, position) => ({ stepId, position, name: stepId, type: "shell" as const, command: "true", timeoutSeconds: null, retry: "never" as const })),
});

describe("§Resync: applyResync on a journal", () => {
  let dir: string;
  let journal: Journal;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "outpost-resync-"));
    journal = await Journal.open(join(dir, "journal.db"));
  });
  afterEach(async () => {
    await journal.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("deletes applied reports, rebuilds a lost final result with the same id and content, interrupts the unknown", async () => {
    await journal.storeCommands([{ kind: "valid", command: cmd(1, ["s1", "s2"]) }]);
    await journal.startStep("s1", "dep-1", 100);
    await journal.finishStep("s1", "dep-1", { status: "failed", exitCode: 3, reason: "exit code 3" }, 5, 200);
    await journal.setLogUploaded("s1", 5);
    const original = (await journal.peekOutbox(10)).find((e) => e.id === "s1:finished")!.report;
    // the server applied both reports but the acknowledgement was lost
    const hello = { lastSeq: await journal.lastSeq(), reports: await journal.outboxIds(1000) };
    expect(hello).toEqual({ lastSeq: 1, reports: ["s1:started", "s1:finished"] });
    let settled = 0;
    const heads: number[] = [];
    const resent: string[] = [];
    const deps = { journal, log: createLogger("test"), onSettled: () => settled++, onHead: (h: number) => heads.push(h), onLogResend: (id: string) => resent.push(id) };
    await applyResync(deps, hello, { type: "welcome", agentId: "a", head: 1, acked: 1, applied: hello.reports, expecting: [] });
    expect(await journal.outboxIds(10)).toEqual([]);
    expect(settled).toBe(1);
    expect(heads).toEqual([1]);

    // later the server (restored from an older state) expects s1 again, and s9 it never sent us
    await applyResync(deps, { lastSeq: 1, reports: [] }, { type: "welcome", agentId: "a", head: 1, acked: 1, applied: [], expecting: ["s1", "s2", "s9"] });
    const out = await journal.peekOutbox(10);
    expect(out.map((e) => e.id)).toEqual(["s1:finished"]);
    expect(out[0].report).toEqual(original);
    expect(resent).toEqual(["s1"]); // its output goes up again from offset 0
    expect((await journal.step("s1"))?.logUploaded).toBe(0);
    expect((await journal.step("s9"))).toBeUndefined(); // no command names it: nothing to build a report from
  });

  it("reports a step the journal lost (but whose command it holds) as interrupted, never run", async () => {
    await journal.storeCommands([{ kind: "rejected", seq: 1, id: "bad", deploymentId: "dep-1", stepIds: [], reason: "x" }]);
    // a step row missing while the command body names it: build the report from the command
    await journal.storeCommands([{ kind: "valid", command: cmd(2, ["k1"]) }]);
    const raw = createClient({ url: pathToFileURL(join(dir, "journal.db")).href });
    await raw.execute("DELETE FROM steps WHERE step_id = 'k1'");
    raw.close();
    const deps = { journal, log: createLogger("test"), onSettled: () => {}, onHead: () => {}, onLogResend: () => {} };
    await applyResync(deps, { lastSeq: 2, reports: [] }, { type: "welcome", agentId: "a", head: 2, acked: 2, applied: [], expecting: ["k1"] });
    const out = await journal.peekOutbox(10);
    expect(out.map((e) => e.report)).toMatchObject([{ type: "step-finished", stepId: "k1", deploymentId: "dep-2", status: "interrupted", reason: NO_RECORD_REASON }]);
    expect((await journal.step("k1"))?.state).toBe("interrupted");
  });
});
