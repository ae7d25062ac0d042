import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { CommandBody, Report } from "../schema/agent-api.ts";
import type { AgentChannel } from "./agent-channel.ts";
import { LedgerError, openLedger } from "./ledger.ts";

const channel = (name: string) => env.AGENT_CHANNEL.get(env.AGENT_CHANNEL.idFromName(name));

const command = (deploymentId: string, agentId: string, stepIds: string[]): CommandBody => ({
  type: "deploy",
  id: `${deploymentId}:${agentId}`,
  deploymentId,
  agentLostAfterSeconds: 900,
  steps: stepIds.map((stepId, position) => ({ stepId, position, name: stepId, type: "shell", command: "true", timeoutSeconds: null, retry: "never" })),
});

describe("ledger", () => {
  it("gives dense seqs and returns the existing seq for a known command id", async () => {
    await runInDurableObject(channel("ledger-seq"), (_i: AgentChannel, state) => {
      const ledger = openLedger(state.storage);
      expect(ledger.head()).toBe(0);
      expect(ledger.enqueue(command("d1", "a", ["s1"]), 1)).toEqual({ seq: 1, created: true });
      expect(ledger.enqueue(command("d2", "a", ["s2"]), 2)).toEqual({ seq: 2, created: true });
      expect(ledger.enqueue(command("d1", "a", ["s1"]), 3)).toEqual({ seq: 1, created: false });
      expect(ledger.head()).toBe(2);
      expect(ledger.commandsAfter(1).map((c) => c.seq)).toEqual([2]);
      expect(ledger.commandsAfter(0, 1).map((c) => c.id)).toEqual(["d1:a"]);
    });
  });

  it("keeps the cumulative ack monotonic", async () => {
    await runInDurableObject(channel("ledger-ack"), (_i: AgentChannel, state) => {
      const ledger = openLedger(state.storage);
      ledger.ack(3);
      ledger.ack(1);
      expect(ledger.ackedSeq()).toBe(3);
    });
  });

  it("binds a channel to one agent", async () => {
    await runInDurableObject(channel("ledger-bind"), (_i: AgentChannel, state) => {
      const ledger = openLedger(state.storage);
      ledger.bindAgent("a");
      ledger.bindAgent("a");
      expect(() => ledger.bindAgent("b")).toThrow(LedgerError);
      expect(ledger.agentId()).toBe("a");
    });
  });

  it("applies a report id once, acknowledges it every time, and finds foreign steps", async () => {
    await runInDurableObject(channel("ledger-reports"), (_i: AgentChannel, state) => {
      const ledger = openLedger(state.storage);
      ledger.enqueue(command("d1", "a", ["s1", "s2"]), 1);
      const r: Report = { type: "step-started", id: "s1:started", deploymentId: "d1", stepId: "s1", at: 5 };
      const foreign: Report = { ...r, id: "x:started", stepId: "x" };
      const otherDeployment: Report = { ...r, deploymentId: "d9" };
      expect(ledger.foreignReports([r, foreign, otherDeployment])).toEqual([foreign, otherDeployment]);
      expect(ledger.applyReports([r], 10)).toEqual({ acked: ["s1:started"], applied: ["s1:started"] });
      expect(ledger.applyReports([r, r], 11)).toEqual({ acked: ["s1:started"], applied: [] });
      const [row] = ledger.outbox();
      expect(row.key).toBe("s1:started");
      ledger.markProjectionFailed([row.order], "boom");
      expect(ledger.outboxStats()).toEqual({ pending: 1, maxAttempts: 1 });
      ledger.markProjected([row.order]);
      expect(ledger.outboxStats()).toEqual({ pending: 0, maxAttempts: 0 });
      expect(ledger.applyReports([r], 12).applied).toEqual([]);
    });
  });
});
