// Upgrades keep data: a D1 as the previous release left it (migrations 0000–0002:
// agents without tags or properties, deployments without properties, rollout or
// cancel, shell steps only) takes migration 0003 with its history intact, and the API
// reads that history with the new fields at their defaults.
import { applyD1Migrations } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { call, expectError } from "./helpers.ts";

describe("D1 migration 0003 (plug-ins, secrets, rollout, cancel)", () => {
  it("keeps the previous release's agents, deployments, steps and logs readable", async () => {
    const migrations = env.TEST_MIGRATIONS!;
    const index = migrations.findIndex((m) => m.name.startsWith("0003_"));
    expect(index).toBe(3);
    // Back to an empty database, then the previous release's schema.
    const tables = await env.DB.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'").all<{ name: string }>();
    for (const t of tables.results) await env.DB.prepare(`DROP TABLE "${t.name}"`).run();
    await applyD1Migrations(env.DB, migrations.slice(0, index));
    const columns = await env.DB.prepare("SELECT name FROM pragma_table_info('agents')").all<{ name: string }>();
    expect(columns.results.map((c) => c.name)).not.toContain("tags");

    await env.DB.batch([
      env.DB.prepare("INSERT INTO agents (id, name, credential_hash, status, version, created_at) VALUES ('a-1', 'old-agent', 'h', 'offline', '0.1.0', 1000)"),
      env.DB.prepare("INSERT INTO deployments (id, name, status, created_at, updated_at, finished_at, agent_lost_after_seconds) VALUES ('d-1', 'old deploy', 'succeeded', 2000, 3000, 3000, 900)"),
      env.DB.prepare("INSERT INTO deployment_targets (deployment_id, agent_id, command_id, dispatched_at) VALUES ('d-1', 'a-1', 'd-1:a-1', 2100)"),
      env.DB.prepare(
        "INSERT INTO deployment_steps (id, deployment_id, agent_id, position, name, type, command, retry, status, exit_code, started_at, finished_at, reported_at, log_length) VALUES ('s-1', 'd-1', 'a-1', 0, 'build', 'shell', 'make', 'never', 'succeeded', 0, 2200, 2900, 2950, 6)",
      ),
      env.DB.prepare("INSERT INTO step_logs (step_id, offset, data) VALUES ('s-1', 0, ?)").bind(new TextEncoder().encode("built\n")),
    ]);

    await applyD1Migrations(env.DB, migrations);

    const agents = (await (await call("/api/v1/agents")).json()) as { agents: Record<string, unknown>[] };
    expect(agents.agents).toEqual([{ id: "a-1", name: "old-agent", status: "offline", version: "0.1.0", lastSeenAt: null, tags: [], properties: {} }]);
    const view = (await (await call("/api/v1/deployments/d-1")).json()) as Record<string, unknown>;
    expect(view).toMatchObject({
      id: "d-1",
      name: "old deploy",
      status: "succeeded",
      canceledAt: null,
      properties: {},
      targets: { agents: ["old-agent"], tags: null },
      rollout: null,
      steps: [{ id: "s-1", agent: "old-agent", name: "build", type: "shell", plugin: null, wave: 1, outputs: {}, status: "succeeded", exitCode: 0 }],
    });
    expect(await (await call("/api/v1/deployments/d-1/steps/s-1/log")).text()).toBe("built\n");
    const list = (await (await call("/api/v1/deployments")).json()) as { deployments: Record<string, unknown>[] };
    expect(list.deployments[0]).toMatchObject({ id: "d-1", agentCount: 1, canceledAt: null });
    // The old rows take the new writes: tags on the agent; an ended deployment is not canceled.
    expect((await call("/api/v1/agents/a-1", { method: "PATCH", body: JSON.stringify({ tags: ["web"] }) })).status).toBe(200);
    await expectError(await call("/api/v1/deployments/d-1/cancel", { method: "POST" }), 409, /already ended/);
  });
});
