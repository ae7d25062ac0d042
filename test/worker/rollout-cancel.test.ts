// docs/api.md §Rollout and §Cancel, through the real Worker, D1, the agents' channels
// and the deployments' coordinators: agents are played over the agent API.
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { coordinatorOf } from "../../durable-objects/channels.ts";
import type { DeploymentCoordinator } from "../../durable-objects/deployment-coordinator.ts";
import { describe, expect, it } from "vitest";
import { deployCommand } from "../../d1/dispatch-targets.ts";
import { d1 } from "../../d1/db.ts";
import { dispatchTarget } from "../../durable-objects/dispatch.ts";
import { createDeploymentBody } from "../../schema/api.ts";
import { createDeployment as createRows } from "../../worker/deployments/create.ts";
import type { Command } from "../../schema/agent-api.ts";
import { agentCall, call, eventually, expectError, finishedReport, postJson, postReports, registerAgent, startedReport, type Cmd, type TestAgent } from "./helpers.ts";

type View = {
  status: string;
  canceledAt: string | null;
  targets: { agents: string[]; tags: string[] | null };
  rollout: { waves: number; currentWave: number; stopOnFailure: boolean } | null;
  steps: { agent: string; wave: number; status: string; reason: string | null }[];
};
const view = async (id: string): Promise<View> => (await (await call(`/api/v1/deployments/${id}`)).json()) as View;

async function commands(agent: TestAgent, after = 0): Promise<Command[]> {
  const res = await agentCall(agent, `/agent/v1/commands?after=${after}`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { commands: Command[] }).commands;
}

async function tagged(prefix: string, n: number, tags: string[]): Promise<TestAgent[]> {
  const agents: TestAgent[] = [];
  for (let i = 0; i < n; i++) {
    const a = await registerAgent(`${prefix}-${i}`);
    const res = await call(`/api/v1/agents/${a.agentId}`, { method: "PATCH", body: JSON.stringify({ tags }) });
    expect(res.status, await res.clone().text()).toBe(200);
    agents.push(a);
  }
  return agents;
}

// Plays one agent's part: pulls its deploy command and reports every step with `status`.
async function runAs(agent: TestAgent, status: "succeeded" | "failed"): Promise<void> {
  const cmd = (await commands(agent)).find((c) => c.type === "deploy") as Cmd;
  const reports = cmd.steps.flatMap((_, i) => [startedReport(cmd, i), finishedReport(cmd, i, status, status === "succeeded" ? 0 : 1)]);
  expect((await postReports(agent, reports)).status).toBe(200);
}

const hasDeploy = async (a: TestAgent) => (await commands(a)).some((c) => c.type === "deploy");

describe("rollout in waves", () => {
  it("runs 6 tagged agents in 3 waves of 2, in order", async () => {
    const agents = await tagged("wave", 6, ["wave-web", "eu"]);
    await tagged("other", 1, ["eu"]); // lacks wave-web: not a target
    const res = await postJson("/api/v1/deployments", {
      targets: { tags: ["wave-web", "eu"] },
      rollout: { batchSize: 2, stopOnFailure: true },
      steps: [{ name: "one", type: "shell", command: "true" }],
    });
    expect(res.status, await res.clone().text()).toBe(201);
    const { id } = (await res.json()) as { id: string };
    const first = await view(id);
    expect(first.targets).toEqual({ agents: agents.map((a) => a.name), tags: ["wave-web", "eu"] });
    expect(first.rollout).toMatchObject({ waves: 3, currentWave: 1, stopOnFailure: true });
    expect(first.steps.map((s) => [s.agent, s.wave])).toEqual(agents.map((a, i) => [a.name, Math.floor(i / 2) + 1]));

    for (let wave = 0; wave < 3; wave++) {
      const inWave = agents.slice(wave * 2, wave * 2 + 2);
      const later = agents.slice(wave * 2 + 2);
      for (const a of inWave) await eventually(() => hasDeploy(a), `wave ${wave + 1} dispatched to ${a.name}`);
      for (const a of later) expect(await hasDeploy(a), `${a.name} must wait for its wave`).toBe(false);
      for (const a of inWave) await runAs(a, "succeeded");
    }
    const done = await eventually(async () => ((await view(id)).status === "succeeded" ? view(id) : null), "deployment succeeded");
    expect(done.rollout?.currentWave).toBe(3);
    const stored = await runInDurableObject(coordinatorOf(env, id), (_i: DeploymentCoordinator, state) => state.storage.get<string>("deploymentId"));
    expect(stored).toBe(id);
  });

  it("stops after a failing wave with stopOnFailure: later agents' steps are skipped", async () => {
    const agents = await tagged("stop", 6, ["stop-web"]);
    const res = await postJson("/api/v1/deployments", {
      targets: { tags: ["stop-web"] },
      rollout: { batchSize: "34%", stopOnFailure: true },
      steps: [{ name: "a", type: "shell", command: "true" }, { name: "b", type: "shell", command: "true" }],
    });
    const { id } = (await res.json()) as { id: string };
    for (const a of agents.slice(0, 3)) await eventually(() => hasDeploy(a), "wave 1");
    await runAs(agents[0], "succeeded");
    await runAs(agents[1], "failed");
    await runAs(agents[2], "succeeded");
    const ended = await eventually(async () => ((await view(id)).status === "failed" ? view(id) : null), "deployment failed");
    const later = ended.steps.filter((s) => s.wave === 2);
    expect(later).toHaveLength(6);
    expect(later.every((s) => s.status === "skipped" && /wave 1 failed/.test(s.reason ?? ""))).toBe(true);
    for (const a of agents.slice(3)) expect(await hasDeploy(a)).toBe(false);
  });

  it("without stopOnFailure a failed wave does not stop the next", async () => {
    const agents = await tagged("go", 2, ["go-web"]);
    const res = await postJson("/api/v1/deployments", { targets: { tags: ["go-web"] }, rollout: { batchSize: 1 }, steps: [{ name: "a", type: "shell", command: "true" }] });
    const { id } = (await res.json()) as { id: string };
    await eventually(() => hasDeploy(agents[0]), "wave 1");
    await runAs(agents[0], "failed");
    await eventually(() => hasDeploy(agents[1]), "wave 2 after a failed wave");
    await runAs(agents[1], "succeeded");
    expect((await eventually(async () => ((await view(id)).status === "failed" ? view(id) : null), "ended")).status).toBe("failed");
  });
});

describe("cancel", () => {
  it("ends undispatched steps at once and sends dispatched agents a cancel command", async () => {
    const agents = await tagged("cancel", 2, ["cancel-web"]);
    const res = await postJson("/api/v1/deployments", { targets: { tags: ["cancel-web"] }, rollout: { batchSize: 1 }, steps: [{ name: "a", type: "shell", command: "sleep 60" }, { name: "b", type: "shell", command: "true" }] });
    const { id } = (await res.json()) as { id: string };
    await eventually(() => hasDeploy(agents[0]), "wave 1");
    const cmd = (await commands(agents[0]))[0] as Cmd;
    expect((await postReports(agents[0], [startedReport(cmd, 0)])).status).toBe(200);

    const canceled = await call(`/api/v1/deployments/${id}/cancel`, { method: "POST" });
    expect(canceled.status, await canceled.clone().text()).toBe(202);
    const mid = await view(id);
    expect(mid.canceledAt).not.toBeNull();
    expect(mid.status).toBe("running"); // the running step is the agent's to end
    expect(mid.steps.filter((s) => s.agent === agents[1].name).map((s) => s.status)).toEqual(["canceled", "canceled"]);

    const cancel = await eventually(async () => (await commands(agents[0])).find((c) => c.type === "cancel"), "cancel command stored");
    expect(cancel).toMatchObject({ type: "cancel", deploymentId: id, seq: 2 });
    // Repeating the cancel is harmless.
    expect((await call(`/api/v1/deployments/${id}/cancel`, { method: "POST" })).status).toBe(202);
    expect((await commands(agents[0])).filter((c) => c.type === "cancel")).toHaveLength(1);

    const reports = [0, 1].map((i) => finishedReport(cmd, i, "canceled", null, "canceled"));
    expect((await postReports(agents[0], reports)).status).toBe(200);
    const ended = await eventually(async () => ((await view(id)).status === "canceled" ? view(id) : null), "deployment canceled");
    expect(ended.steps.every((s) => s.status === "canceled")).toBe(true);
    // The second agent never got the deploy command.
    expect(await hasDeploy(agents[1])).toBe(false);
  });

  it("a step that finished first keeps its result; an ended deployment answers 409", async () => {
    const [agent] = await tagged("keep", 1, ["keep-web"]);
    const res = await postJson("/api/v1/deployments", { agents: [agent.name], steps: [{ name: "a", type: "shell", command: "true" }, { name: "b", type: "shell", command: "true" }] });
    const { id } = (await res.json()) as { id: string };
    const cmd = (await commands(agent))[0] as Cmd;
    await postReports(agent, [startedReport(cmd, 0), finishedReport(cmd, 0, "succeeded", 0), startedReport(cmd, 1)]);
    expect((await call(`/api/v1/deployments/${id}/cancel`, { method: "POST" })).status).toBe(202);
    await postReports(agent, [finishedReport(cmd, 1, "canceled", null, "canceled")]);
    const ended = await eventually(async () => ((await view(id)).status === "canceled" ? view(id) : null), "canceled");
    expect(ended.steps.map((s) => s.status)).toEqual(["succeeded", "canceled"]);
    expect((await call(`/api/v1/deployments/${id}/cancel`, { method: "POST" })).status).toBe(202); // still canceled

    const res2 = await postJson("/api/v1/deployments", { agents: [agent.name], steps: [{ name: "a", type: "shell", command: "true" }] });
    const done = (await res2.json()) as { id: string };
    const cmd2 = (await commands(agent)).find((c) => c.type === "deploy" && c.deploymentId === done.id) as Cmd;
    await postReports(agent, [startedReport(cmd2, 0), finishedReport(cmd2, 0, "succeeded", 0)]);
    await eventually(async () => (await view(done.id)).status === "succeeded", "succeeded");
    // A one-wave deployment needs no coordinator: its agent's channel never pokes one.
    const stored = await runInDurableObject(coordinatorOf(env, done.id), (_i: DeploymentCoordinator, state) => state.storage.get<string>("deploymentId"));
    expect(stored).toBeUndefined();
    await expectError(await call(`/api/v1/deployments/${done.id}/cancel`, { method: "POST" }), 409, /already ended \(succeeded\)/);
    expect((await view(done.id)).canceledAt).toBeNull();
    await expectError(await call(`/api/v1/deployments/no-such/cancel`, { method: "POST" }), 404);
  });

  it("the cancel reaches an agent's channel even when its deploy was stored while it was away", async () => {
    const [agent] = await tagged("away", 1, ["away-web"]);
    const res = await postJson("/api/v1/deployments", { agents: [agent.name], steps: [{ name: "a", type: "shell", command: "true" }] });
    const { id } = (await res.json()) as { id: string };
    expect((await call(`/api/v1/deployments/${id}/cancel`, { method: "POST" })).status).toBe(202);
    // Nothing was pulled in between: the agent finds both, in order, when it returns.
    const all = await eventually(async () => ((await commands(agent)).length === 2 ? commands(agent) : null), "two commands");
    expect(all.map((c) => c.type)).toEqual(["deploy", "cancel"]);
  });
});

describe("cancel racing a dispatch", () => {
  it("an agent whose command was stored just before the cancel's batch still gets the cancel", async () => {
    const [agent] = await tagged("race", 1, ["race-web"]);
    // Rows written, the command stored in the agent's channel, not yet marked dispatched …
    const created = await createRows(d1(env), env.DB, createDeploymentBody.parse({ agents: [agent.name], steps: [{ name: "a", type: "shell", command: "true" }] }), Date.now());
    const [target] = created.firstWave;
    await env.AGENT_CHANNEL.get(env.AGENT_CHANNEL.idFromName(agent.agentId)).enqueue(agent.agentId, deployCommand(target));
    // … when the cancel's batch runs: it takes the target for undispatched and ends its steps.
    expect((await call(`/api/v1/deployments/${created.id}/cancel`, { method: "POST" })).status).toBe(202);
    expect((await view(created.id)).status).toBe("canceled");
    // The dispatch then marks it: the mark sees the cancel, and the agent is told.
    await dispatchTarget(env, target);
    expect((await commands(agent)).map((c) => c.type)).toEqual(["deploy", "cancel"]);
  });
});
