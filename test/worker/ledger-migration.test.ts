// Upgrades keep data: a ledger as the previous release left it (server jobs keyed
// "<kind>:<seq>" beside report ids, every applied id kept, commands without their
// deployment id) migrates with its history intact and its queue in order.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { AgentChannel } from "../../durable-objects/agent-channel.ts";
import { migrateLedger, openLedger } from "../../durable-objects/ledger.ts";

// The projection_outbox of migrations 0000 + 0001.
const OLD_OUTBOX = `CREATE TABLE projection_outbox (
  report_id text PRIMARY KEY NOT NULL, body text NOT NULL, attempts integer DEFAULT 0 NOT NULL,
  last_error text, created_at integer NOT NULL, kind text DEFAULT 'report' NOT NULL)`;

describe("ledger migrations 0002 (job namespaces) and 0003 (coordinated commands)", () => {
  it("moves server jobs into their own namespace, keeps the queue's order, prunes settled ids, backfills deployment ids", async () => {
    const stub = env.AGENT_CHANNEL.get(env.AGENT_CHANNEL.idFromName("migrated-agent"));
    await runInDurableObject(stub, async (_i: AgentChannel, state) => {
      const sql = state.storage.sql;
      // Roll this (fresh, fully migrated) ledger back to the previous release's shape.
      sql.exec("DROP TABLE projection_outbox");
      sql.exec(OLD_OUTBOX);
      // … and before 0003 (coordinated commands). (drizzle's table has no usable id: rows
      // are told apart by created_at; the two newest are 0002 and 0003.)
      sql.exec("ALTER TABLE commands DROP COLUMN coordinated");
      sql.exec("DELETE FROM __drizzle_migrations WHERE created_at IN (SELECT created_at FROM __drizzle_migrations ORDER BY created_at DESC LIMIT 2)");

      const body = (stepIds: string[]) =>
        JSON.stringify({ type: "deploy", id: "dep-1:migrated-agent", deploymentId: "dep-1", agentLostAfterSeconds: 900, steps: stepIds.map((stepId, position) => ({ stepId, position, name: stepId, type: "shell", command: "true", timeoutSeconds: null, retry: "never" })) });
      sql.exec("INSERT INTO commands (seq, id, body, created_at, deployment_id) VALUES (1, 'dep-1:migrated-agent', ?, 1000, '')", body(["done", "open"]));
      sql.exec("INSERT INTO command_steps (step_id, command_seq, finished_at) VALUES ('done', 1, 2000), ('open', 1, NULL)");
      for (const id of ["done:started", "done:finished", "open:started", "free-text-from-an-old-agent"]) sql.exec("INSERT INTO applied_reports (id, applied_at) VALUES (?, 1500)", id);
      const started = { type: "step-started", id: "open:started", deploymentId: "dep-1", stepId: "open", at: 1400 };
      sql.exec("INSERT INTO projection_outbox (report_id, kind, body, attempts, created_at) VALUES ('open:started', 'report', ?, 2, 1500)", JSON.stringify(started));
      sql.exec("INSERT INTO projection_outbox (report_id, kind, body, created_at) VALUES ('agent-lost:1', 'agent-lost', ?, 1600)", JSON.stringify({ deploymentId: "dep-1", at: 1600 }));
      sql.exec("INSERT INTO projection_outbox (report_id, kind, body, created_at) VALUES ('revoked:1', 'revoked', ?, 1700)", JSON.stringify({ at: 1700 }));

      await migrateLedger(state.storage);

      const ledger = openLedger(state.storage);
      expect(ledger.outbox().map((o) => [o.job.kind, o.key, o.attempts])).toEqual([
        ["report", "open:started", 2],
        ["agent-lost", "1", 0],
        ["revoked", "1", 0],
      ]);
      // A report stored before reports carried their placed time: its own `at`, received when stored.
      expect(ledger.outbox()[0].job).toEqual({ kind: "report", report: started, at: 1400, receivedAt: 1500 });
      expect(sql.exec<{ id: string }>("SELECT id FROM applied_reports ORDER BY id").toArray().map((r) => r.id)).toEqual(["open:started"]);
      expect(sql.exec<{ d: string }>("SELECT deployment_id AS d FROM commands").one().d).toBe("dep-1");
      // 0003: a command stored before rollouts is not a coordinated one.
      expect(sql.exec<{ c: number }>("SELECT coordinated AS c FROM commands").one().c).toBe(0);
      expect(ledger.coordinatedDeploymentSettled("dep-1")).toBe(false);
      // Still a working ledger: dedupe of the settled step comes from command_steps.
      expect(ledger.appliedAmong(["done:finished", "open:started", "open:finished"])).toEqual(["done:finished", "open:started"]);
    });
  });
});
