// docs/protocol.md §Commands (stored before acknowledged, never twice) and §Reports (outbox, stable ids).
// The journal against a real libSQL file in a temp dir.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Command } from "../../schema/agent-api.ts";
import { Journal } from "./journal.ts";

const deploy = (seq: number, id = `cmd-${seq}`, nSteps = 2): Command => ({
  seq, type: "deploy", id, deploymentId: `dep-${seq}`, agentLostAfterSeconds: 900,
  steps: Array.from({ length: nSteps }, (_, i) => ({ stepId: `${id}-s${i}`, position: i, name: `s${i}`, type: "shell" as const, command: "true", timeoutSeconds: null, retry: "never" as const })),
});

let dir: string;
let journal: Journal;
beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "outpost-journal-"));
  journal = await Journal.open(join(dir, "journal.db"));
});
afterEach(async () => {
  await journal.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("journal", () => {
  it("stores commands with their steps and lastSeq, durably across reopen", async () => {
    expect(await journal.lastSeq()).toBe(0);
    const r = await journal.storeCommands([{ kind: "valid", command: deploy(1) }, { kind: "valid", command: deploy(2) }]);
    expect(r).toEqual({ stored: [1, 2], lastSeq: 2 });
    await journal.close();
    journal = await Journal.open(join(dir, "journal.db"));
    expect(await journal.lastSeq()).toBe(2);
    expect(await journal.unfinishedCommandSeqs()).toEqual([1, 2]);
    expect((await journal.steps(2)).map((s) => [s.stepId, s.state])).toEqual([["cmd-2-s0", "pending"], ["cmd-2-s1", "pending"]]);
    expect((await journal.command(1)).command.id).toBe("cmd-1");
  });

  it("never stores a command id twice, even under a new seq", async () => {
    await journal.storeCommands([{ kind: "valid", command: deploy(1, "same") }]);
    await journal.endCommand(1, [], "");
    const r = await journal.storeCommands([{ kind: "valid", command: deploy(2, "same") }]);
    expect(r).toEqual({ stored: [], lastSeq: 2 });
    expect(await journal.unfinishedCommandSeqs()).toEqual([]);
  });

  it("writes each state change and its report in one transaction, with stable report ids", async () => {
    await journal.storeCommands([{ kind: "valid", command: deploy(1) }]);
    await journal.startStep("cmd-1-s0", "dep-1", 100);
    expect(await journal.runningStepIds()).toEqual(["cmd-1-s0"]);
    await journal.finishStep("cmd-1-s0", "dep-1", { status: "failed", exitCode: 3, reason: "exit code 3" }, 42, 200);
    await journal.endCommand(1, [{ stepId: "cmd-1-s1", deploymentId: "dep-1" }], "an earlier step failed", 300);
    const out = await journal.peekOutbox(100);
    expect(out.map((e) => e.id)).toEqual(["cmd-1-s0:started", "cmd-1-s0:finished", "cmd-1-s1:finished"]);
    expect(out[1].report).toMatchObject({ type: "step-finished", status: "failed", exitCode: 3, at: 200 });
    expect(out[2].report).toMatchObject({ status: "skipped", exitCode: null });
    expect(await journal.outboxCount()).toBe(3);
    expect((await journal.step("cmd-1-s0"))).toMatchObject({ state: "failed", logSize: 42, logUploaded: 0 });
    expect(await journal.unfinishedCommandSeqs()).toEqual([]);
    await journal.deleteReports(["cmd-1-s0:started", "cmd-1-s0:finished"]);
    expect((await journal.peekOutbox(100)).map((e) => e.id)).toEqual(["cmd-1-s1:finished"]);
  });

  it("refuses to start a step that is not pending, and changes nothing then", async () => {
    await journal.storeCommands([{ kind: "valid", command: deploy(1) }]);
    await journal.startStep("cmd-1-s0", "dep-1");
    await expect(journal.startStep("cmd-1-s0", "dep-1")).rejects.toThrow(/not pending/);
    expect(await journal.outboxCount()).toBe(1);
    await expect(journal.finishStep("cmd-1-s1", "dep-1", { status: "succeeded", exitCode: 0, reason: null }, 0)).rejects.toThrow(/not running/);
    expect(await journal.outboxCount()).toBe(1);
  });

  it("puts an interrupted safe step back to pending; a re-run's started report keeps its id", async () => {
    await journal.storeCommands([{ kind: "valid", command: deploy(1) }]);
    await journal.startStep("cmd-1-s0", "dep-1");
    await journal.resetStepForRetry("cmd-1-s0");
    await journal.startStep("cmd-1-s0", "dep-1");
    expect((await journal.peekOutbox(10)).map((e) => e.id)).toEqual(["cmd-1-s0:started"]);
  });

  it("tracks log upload progress of ended steps", async () => {
    await journal.storeCommands([{ kind: "valid", command: deploy(1) }]);
    await journal.startStep("cmd-1-s0", "dep-1");
    await journal.finishStep("cmd-1-s0", "dep-1", { status: "succeeded", exitCode: 0, reason: null }, 10);
    expect(await journal.stepsAwaitingLogUpload()).toEqual(["cmd-1-s0"]);
    await journal.setLogUploaded("cmd-1-s0", 10);
    expect(await journal.stepsAwaitingLogUpload()).toEqual([]);
  });

  it("stores a rejected command as ended, with a failed report per readable step", async () => {
    await journal.storeCommands([{ kind: "rejected", seq: 7, id: "bad", deploymentId: "dep-7", stepIds: ["x1", "x2"], reason: "steps.0.type: invalid" }]);
    expect(await journal.lastSeq()).toBe(7);
    expect(await journal.unfinishedCommandSeqs()).toEqual([]);
    const out = await journal.peekOutbox(10);
    expect(out.map((e) => e.report)).toMatchObject([
      { stepId: "x1", status: "failed", reason: "agent rejected the command: steps.0.type: invalid" },
      { stepId: "x2", status: "failed" },
    ]);
  });

  it("stores a lost command as ended, each step interrupted with the no-record reason, never to run", async () => {
    const r = await journal.storeCommands([{ kind: "lost", seq: 3, id: "gone", deploymentId: "dep-3", stepIds: ["g0", "g1"] }]);
    expect(r).toEqual({ stored: [3], lastSeq: 3 });
    expect(await journal.unfinishedCommandSeqs()).toEqual([]);
    expect((await journal.steps(3)).map((s) => [s.stepId, s.position, s.state])).toEqual([["g0", 0, "interrupted"], ["g1", 1, "interrupted"]]);
    expect((await journal.peekOutbox(10)).map((e) => e.report)).toMatchObject([
      { type: "step-finished", id: "g0:finished", deploymentId: "dep-3", status: "interrupted", exitCode: null, reason: "agent has no record of this step (journal lost)" },
      { id: "g1:finished", status: "interrupted" },
    ]);
  });

  it("serializes concurrent operations without losing any", async () => {
    await Promise.all(Array.from({ length: 20 }, (_, i) => journal.storeCommands([{ kind: "valid", command: deploy(i + 1, `c${i}`, 1) }])));
    expect(await journal.lastSeq()).toBe(20);
    await Promise.all(Array.from({ length: 20 }, (_, i) => journal.startStep(`c${i}-s0`, `dep-${i + 1}`)));
    expect(await journal.outboxCount()).toBe(20);
  });
});
