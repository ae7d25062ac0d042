// A deployment to many agents (issue 10 — docs/protocol.md §Dispatch): more agents than
// the old cap of 100, by tag; the POST answers once the rows are written, and the
// deployment's coordinator hands every agent its command after the 201 (a first wave
// above INLINE_DISPATCH_TARGETS), in pages; every agent gets exactly its own command.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { INLINE_DISPATCH_TARGETS } from "../../durable-objects/dispatch.ts";
import { LIMITS } from "../../schema/limits.ts";
import { call, eventually, postJson, pull, registerAgent, type TestAgent } from "./helpers.ts";

async function tagged(prefix: string, n: number, tag: string): Promise<TestAgent[]> {
  const agents: TestAgent[] = [];
  for (let i = 0; i < n; i++) {
    const a = await registerAgent(`${prefix}-${String(i).padStart(3, "0")}`);
    const res = await call(`/api/v1/agents/${a.agentId}`, { method: "PATCH", body: JSON.stringify({ tags: [tag] }) });
    expect(res.status).toBe(200);
    agents.push(a);
  }
  return agents;
}

const undispatched = async (id: string) =>
  (await env.DB.prepare("SELECT count(*) AS n FROM deployment_targets WHERE deployment_id = ? AND dispatched_at IS NULL").bind(id).first<{ n: number }>())!.n;

describe("fan-out", () => {
  it("one deployment reaches 130 agents by tag; the coordinator dispatches them all after the 201", async () => {
    const agents = await tagged("fan", 130, "fan-fleet");
    expect(agents.length).toBeGreaterThan(100);
    expect(agents.length).toBeGreaterThan(INLINE_DISPATCH_TARGETS);
    const res = await postJson("/api/v1/deployments", { targets: { tags: ["fan-fleet"] }, steps: [{ name: "a", type: "shell", command: "true" }, { name: "b", type: "shell", command: "echo b" }] });
    expect(res.status, await res.clone().text()).toBe(201);
    const { id } = (await res.json()) as { id: string };
    const steps = await env.DB.prepare("SELECT agent_id, position, name, command FROM deployment_steps WHERE deployment_id = ? ORDER BY agent_id, position").bind(id).all<{ agent_id: string; position: number; name: string; command: string }>();
    expect(steps.results).toHaveLength(260);
    expect(new Set(steps.results.map((s) => s.agent_id)).size).toBe(130);
    expect(steps.results.filter((s) => s.position === 1).every((s) => s.name === "b" && s.command === "echo b")).toBe(true);

    await eventually(async () => (await undispatched(id)) === 0, "every target dispatched by the coordinator", 30_000);
    for (const a of [agents[0], agents[77], agents[129]]) {
      const { commands } = await pull(a, 0);
      expect(commands.map((c) => c.deploymentId)).toEqual([id]);
      const mine = steps.results.filter((s) => s.agent_id === a.agentId).map((s) => s.name);
      expect(commands[0].steps.map((s) => s.name)).toEqual(mine);
      expect(commands[0].context?.agentName).toBe(a.name);
    }
  });

  it("a small deployment is dispatched before the 201", async () => {
    const agents = await tagged("small", 3, "small-fleet");
    const res = await postJson("/api/v1/deployments", { targets: { tags: ["small-fleet"] }, steps: [{ name: "a", type: "shell", command: "true" }] });
    const { id } = (await res.json()) as { id: string };
    expect(await undispatched(id)).toBe(0);
    expect((await pull(agents[2], 0)).commands).toHaveLength(1);
  });

  it("every target gets every step, in order, with its own step ids", async () => {
    const agents = await tagged("rows", 2, "rows-fleet");
    const steps = Array.from({ length: LIMITS.stepsPerDeployment }, (_, i) => ({ name: `s${i}`, type: "shell", command: `echo ${i}` }));
    const res = await postJson("/api/v1/deployments", { targets: { tags: ["rows-fleet"] }, steps });
    expect(res.status, await res.clone().text()).toBe(201);
    const { id } = (await res.json()) as { id: string };
    for (const a of agents) {
      const rows = await env.DB.prepare("SELECT id, position, name, command FROM deployment_steps WHERE deployment_id = ? AND agent_id = ? ORDER BY position").bind(id, a.agentId).all<{ id: string; position: number; name: string; command: string }>();
      expect(rows.results.map((r) => [r.position, r.name, r.command])).toEqual(steps.map((s, i) => [i, s.name, s.command]));
    }
    const ids = await env.DB.prepare("SELECT count(DISTINCT id) AS n FROM deployment_steps WHERE deployment_id = ?").bind(id).first<{ n: number }>();
    expect(ids!.n).toBe(2 * steps.length);
  });
});
