// The journal's retention, rejected reports and log give-ups (agent/README.md
// "Retention", docs/protocol.md §Reports), against real libSQL files, and the
// migration of a journal an earlier version wrote.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createClient } from "@libsql/client";
import { drizzle } from "drizzle-orm/libsql";
import { migrate } from "drizzle-orm/libsql/migrator";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { Command } from "../../schema/agent-api.ts";
import { Journal } from "./journal.ts";

const MIGRATIONS = join(import.meta.dirname, "../../schema/migrations/journal");
const deploy = (seq: number, nSteps = 2): Extract<Command, { type: "deploy" }> => ({
  seq, type: "deploy", id: `cmd-${seq}`, deploymentId: `dep-${seq}`, agentLostAfterSeconds: 900,
  steps: Array.from({ length: nSteps }, (_, i) => ({ stepId: `c${seq}-s${i}`, position: i, name: `s${i}`, type: "shell" as const, command: "true", timeoutSeconds: null, retry: "never" as const })),
});
const ok = { status: "succeeded" as const, exitCode: 0, reason: null };

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

// Runs command `seq` to its end at time `at`: every step succeeded with `size` bytes of output.
async function runToEnd(seq: number, at: number, size = 10) {
  await journal.storeCommands([{ kind: "valid", command: deploy(seq) }], at);
  for (const s of deploy(seq).steps) {
    await journal.startStep(s.stepId, `dep-${seq}`, at);
    await journal.finishStep(s.stepId, `dep-${seq}`, ok, size, at);
  }
  await journal.endCommand(seq, [], "", at);
}
const deliver = async (seq: number, size = 10) => {
  for (const s of deploy(seq).steps) await journal.setLogUploaded(s.stepId, size);
  await journal.deleteReports((await journal.peekOutbox(1000)).map((e) => e.id).filter((id) => id.startsWith(`c${seq}-`)));
};

describe("retention", () => {
  it("prunes only commands that ended before the cutoff and are fully delivered; lastSeq stays and a re-pulled command is not stored again", async () => {
    await runToEnd(1, 1_000);
    await deliver(1);
    await runToEnd(2, 1_000); // reports still in the outbox
    await runToEnd(3, 1_000); // output not uploaded
    await deliver(3);
    await journal.setLogUploaded("c3-s1", 5);
    await runToEnd(4, 5_000); // ended after the cutoff
    await deliver(4);
    await journal.storeCommands([{ kind: "valid", command: deploy(5) }], 1_000); // not ended
    expect((await journal.prunableCommands(2_000, 100)).map((c) => c.seq)).toEqual([1]);
    expect(await journal.prunableCommands(2_000, 100)).toEqual([{ seq: 1, stepIds: ["c1-s0", "c1-s1"], deploymentId: "dep-1" }]);
    expect(await journal.pruneCommands([1, 2, 3, 4, 5], 2_000)).toEqual([1]); // re-checked: only 1 qualifies
    expect(await journal.steps(1)).toEqual([]);
    await expect(journal.command(1)).rejects.toThrow(/no command with seq 1/);
    expect((await journal.steps(2)).length).toBe(2);
    expect(await journal.lastSeq()).toBe(5);
    // Invariant 2 after pruning: the command pulled again is not stored (so never run) again.
    expect(await journal.storeCommands([{ kind: "valid", command: deploy(1) }])).toEqual({ stored: [], lastSeq: 5 });
    expect(await journal.unfinishedCommandSeqs()).toEqual([5]);
  });

  it("counts a given-up log upload as delivered, and stops listing it for upload", async () => {
    await runToEnd(1, 1_000);
    await deliver(1, 0);
    await journal.setLogUploaded("c1-s0", 3);
    expect(await journal.stepsAwaitingLogUpload()).toEqual(["c1-s0", "c1-s1"]);
    expect(await journal.prunableCommands(2_000, 100)).toEqual([]);
    await journal.giveUpLog("c1-s0", "the server ended the step (410)");
    await journal.giveUpLog("c1-s1", "the server ended the step (410)");
    expect(await journal.stepsAwaitingLogUpload()).toEqual([]);
    expect((await journal.step("c1-s0"))?.logGivenUp).toBe("the server ended the step (410)");
    expect((await journal.prunableCommands(2_000, 100)).map((c) => c.seq)).toEqual([1]);
    // A resync that re-sends the result uploads the output again from 0.
    await journal.requeueFinishedReport("c1-s0");
    expect(await journal.step("c1-s0")).toMatchObject({ logUploaded: 0, logGivenUp: null });
  });

  it("re-sends a step's result with the outputs it recorded", async () => {
    await journal.storeCommands([{ kind: "valid", command: deploy(1, 1) }], 1_000);
    await journal.startStep("c1-s0", "dep-1", 1_000);
    await journal.finishStep("c1-s0", "dep-1", { ...ok, outputs: { version: "1.2.3" } }, 10, 1_100);
    await journal.deleteReports(["c1-s0:started", "c1-s0:finished"]);
    expect(await journal.requeueFinishedReport("c1-s0")).toBe(true);
    const [again] = await journal.peekOutbox(10);
    expect(again.report).toMatchObject({ type: "step-finished", status: "succeeded", outputs: { version: "1.2.3" } });
  });

  it("prunes a command that ended without any readable step by its receipt time", async () => {
    await journal.storeCommands([{ kind: "rejected", seq: 1, id: "bad", deploymentId: null, stepIds: [], reason: "x" }], 1_000);
    expect((await journal.prunableCommands(2_000, 100)).map((c) => c.seq)).toEqual([1]);
    expect((await journal.prunableCommands(500, 100)).map((c) => c.seq)).toEqual([]);
  });
});

describe("rejected reports", () => {
  it("moves a report out of the outbox into rejected_reports with the server's reason", async () => {
    await journal.storeCommands([{ kind: "valid", command: deploy(1) }]);
    await journal.startStep("c1-s0", "dep-1", 100);
    const [first] = await journal.peekOutbox(10);
    expect(await journal.rejectReport(first.id, 422, "reports name steps that are not this agent's: c1-s0", 500)).toBe(true);
    expect(await journal.peekOutbox(10)).toEqual([]);
    expect(await journal.rejectedReports()).toEqual([
      { id: "c1-s0:started", body: JSON.stringify(first.report), status: 422, error: "reports name steps that are not this agent's: c1-s0", rejectedAt: 500 },
    ]);
    expect(await journal.rejectReport("not-there", 422, null)).toBe(false);
    // Kept for the retention period, like the rest of the deployment's record.
    await journal.pruneCommands([], 500);
    expect(await journal.rejectedReports()).toHaveLength(1);
    await journal.pruneCommands([], 501);
    expect(await journal.rejectedReports()).toEqual([]);
  });
});

describe("journal migration", () => {
  it("brings a journal written by the first schema up to date with its data intact", async () => {
    // A journal as the first version left it: only migration 0000 applied.
    const old = join(dir, "old-migrations");
    mkdirSync(join(old, "meta"), { recursive: true });
    copyFileSync(join(MIGRATIONS, "0000_init.sql"), join(old, "0000_init.sql"));
    const meta = JSON.parse(readFileSync(join(MIGRATIONS, "meta/_journal.json"), "utf8"));
    writeFileSync(join(old, "meta/_journal.json"), JSON.stringify({ ...meta, entries: meta.entries.slice(0, 1) }));
    const path = join(dir, "old.db");
    const client = createClient({ url: pathToFileURL(path).href });
    await migrate(drizzle(client), { migrationsFolder: old });
    await client.execute("INSERT INTO commands (seq, id, body, state, received_at) VALUES (1, 'cmd-1', '{}', 'running', 10)");
    await client.execute("INSERT INTO steps (step_id, deployment_id, command_seq, position, state, log_uploaded) VALUES ('s1', 'dep-1', 1, 0, 'running', 7)");
    await client.execute("INSERT INTO outbox (id, body, created_at) VALUES ('s1:started', '{}', 10)");
    await client.execute("INSERT INTO meta (key, value) VALUES ('lastSeq', '1')");
    client.close();

    const j = await Journal.open(path);
    try {
      expect(await j.lastSeq()).toBe(1);
      expect(await j.step("s1")).toMatchObject({ state: "running", logUploaded: 7, logGivenUp: null, outputDropped: 0, outputs: null });
      expect(await j.isCanceled("dep-1")).toBe(false); // migration 0002: canceled_deployments
      expect(await j.outboxIds(10)).toEqual(["s1:started"]);
      expect(await j.rejectReport("s1:started", 422, "no")).toBe(true);
      expect((await j.rejectedReports()).map((r) => r.id)).toEqual(["s1:started"]);
    } finally {
      await j.close();
    }
  });
});
