// docs/protocol.md §Reports: a report's id is derived from what it describes (step +
// kind); anything else is refused. Server jobs live in their own namespace, so no report
// can shadow one; applied ids of settled commands are pruned.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { AgentChannel } from "../../durable-objects/agent-channel.ts";
import { openLedger } from "../../durable-objects/ledger.ts";
import { openWork } from "../../durable-objects/work.ts";
import type { Report } from "../../schema/agent-api.ts";
import { createDeployment, deploymentView, expectError, finishedReport, pull, postReports, registerAgent, startedReport, type TestAgent } from "./helpers.ts";

const stub = (agent: TestAgent) => env.AGENT_CHANNEL.get(env.AGENT_CHANNEL.idFromName(agent.agentId));
const appliedIds = (agent: TestAgent) =>
  runInDurableObject(stub(agent), (_i: AgentChannel, state) => state.storage.sql.exec<{ id: string }>("SELECT id FROM applied_reports ORDER BY id").toArray().map((r) => r.id));

describe("report ids", () => {
  it("refuses a report whose id is not the one derived from its step and kind (400), applying nothing", async () => {
    const agent = await registerAgent("ids-1");
    const id = await createDeployment([agent.name]);
    const [cmd] = (await pull(agent, 0)).commands;
    const good = finishedReport(cmd, 0, "succeeded", 0);
    for (const bad of ["revoked:1", "agent-lost:1", `${good.stepId}:started`, `${good.stepId}:finished-again`, "anything"]) {
      const body = await expectError(await postReports(agent, [startedReport(cmd, 0), { ...good, id: bad }]), 400, /id must be/);
      expect(String(body.error)).toContain(`${good.stepId}:finished`);
    }
    expect(await appliedIds(agent)).toEqual([]);
    expect((await deploymentView(id)).steps[0].status).toBe("pending");
  });

  it("keeps server jobs apart from report ids: a report keyed like an old server job cannot shadow a revoke", async () => {
    await runInDurableObject(stub({ agentId: "ids-ns", name: "ids-ns", credential: "" }), (_i: AgentChannel, state) => {
      const ledger = openLedger(state.storage);
      const work = openWork(state.storage);
      ledger.bindAgent("ids-ns");
      ledger.enqueue({ type: "deploy", id: "d:ids-ns", deploymentId: "d", agentLostAfterSeconds: 900, steps: [
        { stepId: "s", position: 0, name: "s", type: "shell", command: "true", timeoutSeconds: null, retry: "never" },
      ] }, 1);
      // Before the id rule a report could carry the key the revoke job would take
      // ("revoked:<head>"); the ledger itself must not let it take the job's place.
      const crafted = { type: "step-started", id: "revoked:1", deploymentId: "d", stepId: "s", at: 1 } as Report;
      ledger.applyReports([crafted], 2);
      work.revoke(3);
      const jobs = ledger.outbox().map((o) => [o.job.kind, o.key]);
      expect(jobs).toEqual([["report", "revoked:1"], ["revoked", "1"]]);
    });
  });

  it("prunes the applied ids of a settled command, and still answers a re-sent report as applied", async () => {
    const agent = await registerAgent("ids-2");
    const id = await createDeployment([agent.name], [{ name: "a", command: "a" }, { name: "b", command: "b" }]);
    const [cmd] = (await pull(agent, 0)).commands;
    const reports = [startedReport(cmd, 0), finishedReport(cmd, 0, "succeeded", 0), startedReport(cmd, 1)];
    expect((await postReports(agent, reports)).status).toBe(200);
    // Open steps keep their ids (dedupe needs them).
    expect(await appliedIds(agent)).toEqual(reports.map((r) => r.id).sort());

    const last = finishedReport(cmd, 1, "succeeded", 0);
    expect((await postReports(agent, [last])).status).toBe(200);
    expect(await appliedIds(agent)).toEqual([]);

    // A lost acknowledgement: the whole history re-sent, with other contents. Acknowledged
    // again, applied never.
    const replay = [...reports, { ...last, status: "failed" as const, exitCode: 7 }];
    const res = await postReports(agent, replay);
    expect(await res.json()).toEqual({ acked: replay.map((r) => r.id) });
    expect(await appliedIds(agent)).toEqual([]);
    const view = await deploymentView(id);
    expect(view.status).toBe("succeeded");
    expect(view.steps.map((s) => [s.status, s.exitCode])).toEqual([["succeeded", 0], ["succeeded", 0]]);
    await runInDurableObject(stub(agent), (_i: AgentChannel, state) => {
      expect(openLedger(state.storage).outboxStats().pending).toBe(0);
    });
  });

  it("bounds applied ids by open work: many settled commands leave none behind", async () => {
    const agent = await registerAgent("ids-3");
    for (let i = 0; i < 5; i++) await createDeployment([agent.name], [{ name: "a", command: "a" }]);
    const { commands } = await pull(agent, 0);
    expect(commands).toHaveLength(5);
    for (const cmd of commands) {
      expect((await postReports(agent, [startedReport(cmd, 0), finishedReport(cmd, 0, "succeeded", 0)])).status).toBe(200);
    }
    expect(await appliedIds(agent)).toEqual([]);
  });
});
