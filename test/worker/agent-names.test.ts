// Issue 9: users think in agent names. Every /api/v1/agents/:id path takes a name too,
// and `register --replace` lets a rebuilt machine take over the name of a revoked or
// offline agent, whose history stays under its own id.
import { applyD1Migrations, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { AgentChannel } from "../../durable-objects/agent-channel.ts";
import { AGENT_REVOKED, type RegisterResponse } from "../../schema/agent-api.ts";
import { sha256Hex } from "../../worker/crypto.ts";
import {
  agentCall, call, countRows, createDeployment, deploymentView, expectError, postJson, pull, registerAgent, registrationToken, TestSocket, type TestAgent,
} from "./helpers.ts";

const register = (body: Record<string, unknown>) => postJson("/agent/v1/register", { version: "1.0.0", ...body }, null);
const stub = (agentId: string) => env.AGENT_CHANNEL.get(env.AGENT_CHANNEL.idFromName(agentId));

async function replaceAgent(name: string): Promise<TestAgent> {
  const res = await register({ token: await registrationToken(), name, replace: true });
  expect(res.status, await res.clone().text()).toBe(201);
  return { ...((await res.json()) as RegisterResponse), name };
}

type Detail = { id: string; name: string; tags: string[]; replaced: { id: string; revokedAt: string }[]; channel: { openCommands: number } };
async function agentView(key: string): Promise<Detail> {
  const res = await call(`/api/v1/agents/${encodeURIComponent(key)}`);
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as Detail;
}

const agentRow = (id: string) =>
  env.DB.prepare("SELECT name, revoked_at AS revokedAt, replaced_by AS replacedBy FROM agents WHERE id = ?")
    .bind(id)
    .first<{ name: string; revokedAt: number | null; replacedBy: string | null }>();
const listedNames = async () => ((await (await call("/api/v1/agents")).json()) as { agents: { id: string; name: string }[] }).agents;
const openLedgerCommands = (agentId: string) =>
  runInDurableObject(stub(agentId), (_i: AgentChannel, state) => state.storage.sql.exec("SELECT count(*) AS n FROM commands WHERE finished_at IS NULL").one().n);

describe("agent paths take the agent's name", () => {
  it("GET, PATCH, the eviction hook and DELETE find a live agent by name", async () => {
    const agent = await registerAgent("named-1");
    expect((await agentView("named-1")).id).toBe(agent.agentId);

    const patched = await call("/api/v1/agents/named-1", { method: "PATCH", body: JSON.stringify({ tags: ["web"] }) });
    expect(patched.status).toBe(200);
    expect(await patched.json()).toMatchObject({ id: agent.agentId, tags: ["web"] });
    expect((await agentView(agent.agentId)).tags).toEqual(["web"]);

    const evicted = await call("/api/v1/test-hooks/agents/named-1/evict", { method: "POST" });
    expect(evicted.status).toBe(200);
    expect(await evicted.json()).toEqual({ evicted: true });

    const revoked = await call("/api/v1/agents/named-1", { method: "DELETE" });
    expect(revoked.status).toBe(200);
    const body = (await revoked.json()) as { id: string; name: string; revokedAt: string };
    expect(body).toMatchObject({ id: agent.agentId, name: "named-1" });
    expect((await agentRow(agent.agentId))?.revokedAt).not.toBeNull();

    // A revoked agent's name finds nothing; its id still answers a repeated DELETE.
    await expectError(await call("/api/v1/agents/named-1"), 404, /named-1 not found/);
    await expectError(await call("/api/v1/agents/named-1", { method: "PATCH", body: JSON.stringify({ tags: [] }) }), 404);
    await expectError(await call("/api/v1/agents/named-1", { method: "DELETE" }), 404);
    await expectError(await call("/api/v1/test-hooks/agents/named-1/evict", { method: "POST" }), 404);
    const repeat = await call(`/api/v1/agents/${agent.agentId}`, { method: "DELETE" });
    expect(repeat.status).toBe(200);
    expect(await repeat.json()).toEqual(body);
  });

  it("answers 404 for an unknown name on every path", async () => {
    await expectError(await call("/api/v1/agents/nobody-here"), 404, /nobody-here not found/);
    await expectError(await call("/api/v1/agents/nobody-here", { method: "PATCH", body: JSON.stringify({ tags: [] }) }), 404);
    await expectError(await call("/api/v1/agents/nobody-here", { method: "DELETE" }), 404);
    await expectError(await call("/api/v1/test-hooks/agents/nobody-here/evict", { method: "POST" }), 404);
  });

  it("prefers an agent's id over another agent's name that looks like it", async () => {
    const first = await registerAgent("id-owner");
    const lookalike = await registerAgent(first.agentId); // a UUID is a valid agent name
    // Not decided by age either: the lookalike looks older.
    await env.DB.prepare("UPDATE agents SET created_at = 0 WHERE id = ?").bind(lookalike.agentId).run();
    expect((await agentView(first.agentId)).name).toBe("id-owner");
    expect((await agentView(lookalike.agentId)).name).toBe(first.agentId);
  });
});

describe("register with replace", () => {
  it("refuses a taken name without replace (409, live or revoked) and leaves the token usable", async () => {
    const live = await registerAgent("taken-live");
    const token = await registrationToken();
    await expectError(await register({ token, name: "taken-live" }), 409, /'taken-live' already exists \(offline: register with --replace/);
    expect((await call(`/api/v1/agents/${live.agentId}`, { method: "DELETE" })).status).toBe(200);
    await expectError(await register({ token, name: "taken-live" }), 409, /already exists \(revoked: register with --replace/);
    await expectError(await register({ token, name: "taken-live", replace: false }), 409);
    // Nothing was consumed: the same token registers another name.
    expect((await register({ token, name: "taken-live-2" })).status).toBe(201);
  });

  it("with no agent of that name, registers as usual", async () => {
    const fresh = await replaceAgent("fresh-name");
    const view = await agentView("fresh-name");
    expect(view).toMatchObject({ id: fresh.agentId, replaced: [] });
  });

  it("takes over a revoked agent's name: a new id and credential, the old one stays revoked and is shown as replaced", async () => {
    const old = await registerAgent("rebuilt");
    const del = (await (await call("/api/v1/agents/rebuilt", { method: "DELETE" })).json()) as { revokedAt: string };
    const fresh = await replaceAgent("rebuilt");
    expect(fresh.agentId).not.toBe(old.agentId);
    expect(fresh.credential).not.toBe(old.credential);

    expect(await agentView("rebuilt")).toMatchObject({ id: fresh.agentId, replaced: [{ id: old.agentId, revokedAt: del.revokedAt }] });
    expect((await listedNames()).filter((a) => a.name === "rebuilt")).toEqual([expect.objectContaining({ id: fresh.agentId })]);
    expect(await agentRow(old.agentId)).toEqual({ name: "rebuilt", revokedAt: Date.parse(del.revokedAt), replacedBy: fresh.agentId });
    // The new credential works, the old one stays revoked.
    expect((await agentCall(fresh, "/agent/v1/commands?after=0")).status).toBe(200);
    expect((await expectError(await agentCall(old, "/agent/v1/commands?after=0"), 401)).code).toBe(AGENT_REVOKED);
  });

  it("takes over an offline agent: revokes it, cancels its open steps, keeps its history under its id", async () => {
    const old = await registerAgent("offline-box");
    const deployment = await createDeployment(["offline-box"], [{ name: "a", command: "true" }, { name: "b", command: "true" }]);
    expect((await pull(old, 0)).commands).toHaveLength(1);
    expect(await openLedgerCommands(old.agentId)).toBe(1);

    const fresh = await replaceAgent("offline-box");
    const row = await agentRow(old.agentId);
    expect(row?.revokedAt).not.toBeNull();
    expect(row?.replacedBy).toBe(fresh.agentId);
    expect((await expectError(await agentCall(old, "/agent/v1/commands?after=0"), 401, /revoked/)).code).toBe(AGENT_REVOKED);
    // Everything a revoke does: D1's steps canceled, the old channel's ledger ended.
    const view = await deploymentView(deployment);
    expect(view.status).toBe("failed");
    expect(view.steps.map((s) => [s.agent, s.status, s.reason])).toEqual([["offline-box", "canceled", "agent revoked"], ["offline-box", "canceled", "agent revoked"]]);
    expect(await openLedgerCommands(old.agentId)).toBe(0);
    const stepAgents = await env.DB.prepare("SELECT DISTINCT agent_id AS a FROM deployment_steps WHERE deployment_id = ?").bind(deployment).all<{ a: string }>();
    expect(stepAgents.results).toEqual([{ a: old.agentId }]);
    expect((await agentView("offline-box")).replaced.map((r) => r.id)).toEqual([old.agentId]);

    // The name now deploys to the new agent, which inherited none of the old work.
    const next = await createDeployment(["offline-box"]);
    const [cmd] = (await pull(fresh, 0)).commands;
    expect(cmd.deploymentId).toBe(next);
  });

  it("registers even when the old agent's channel fails: D1's batch alone revoked it and ended its steps", async () => {
    const old = await registerAgent("broken-channel");
    const deployment = await createDeployment(["broken-channel"]);
    expect((await pull(old, 0)).commands).toHaveLength(1);
    // The channel's revoke throws (its ledger lost a table): the new credential must still be handed out.
    await runInDurableObject(stub(old.agentId), (_i: AgentChannel, state) => void state.storage.sql.exec("DROP TABLE due_work"));
    const fresh = await replaceAgent("broken-channel");
    expect((await agentRow(old.agentId))?.replacedBy).toBe(fresh.agentId);
    expect((await deploymentView(deployment)).steps.map((s) => [s.status, s.reason])).toEqual([["canceled", "agent revoked"]]);
    expect(await openLedgerCommands(old.agentId)).toBe(1); // the channel never ended it
    expect((await agentCall(fresh, "/agent/v1/commands?after=0")).status).toBe(200);
  });

  it("refuses to replace an online agent (409) and changes nothing", async () => {
    const online = await registerAgent("busy-box");
    const socket = await TestSocket.open(online);
    socket.hello();
    await socket.next("welcome");
    const token = await registrationToken();
    const agentsBefore = await countRows("agents");
    await expectError(await register({ token, name: "busy-box", replace: true }), 409, /'busy-box' is online: stop it \(or revoke it\)/);
    expect(await countRows("agents")).toBe(agentsBefore);
    expect(await agentRow(online.agentId)).toEqual({ name: "busy-box", revokedAt: null, replacedBy: null });
    expect(socket.closed).toBeNull();
    // The token was not consumed.
    expect((await register({ token, name: "busy-box-2" })).status).toBe(201);
    socket.ws.close(1000, "done");
  });

  it("with a bad token, neither registers nor touches the agent it would replace", async () => {
    const old = await registerAgent("guarded-box");
    const deployment = await createDeployment(["guarded-box"]);
    const expired = await registrationToken();
    await env.DB.prepare("UPDATE registration_tokens SET expires_at = ? WHERE token_hash = ?").bind(Date.now() - 1, await sha256Hex(expired)).run();
    const agentsBefore = await countRows("agents");
    for (const token of ["made-up", expired]) {
      await expectError(await register({ token, name: "guarded-box", replace: true }), 401, /invalid, expired or already used/);
    }
    // And a fresh name with a bad token: 401, no row.
    await expectError(await register({ token: "made-up", name: "guarded-new", replace: true }), 401);
    expect(await countRows("agents")).toBe(agentsBefore);
    expect(await agentRow(old.agentId)).toEqual({ name: "guarded-box", revokedAt: null, replacedBy: null });
    expect((await deploymentView(deployment)).steps.map((s) => s.status)).toEqual(["pending"]);
    expect((await agentCall(old, "/agent/v1/commands?after=0")).status).toBe(200);
  });

  it("a token is used once, even to replace", async () => {
    await registerAgent("once-box");
    const token = await registrationToken();
    expect((await register({ token, name: "once-box", replace: true })).status).toBe(201);
    await expectError(await register({ token, name: "once-box", replace: true }), 401, /already used/);
    expect((await listedNames()).filter((a) => a.name === "once-box")).toHaveLength(1);
  });

  it("lists the whole chain of agents a name went through, latest first", async () => {
    const first = await registerAgent("chain-box");
    const second = await replaceAgent("chain-box");
    const third = await replaceAgent("chain-box");
    expect((await agentView("chain-box")).replaced.map((r) => r.id)).toEqual([second.agentId, first.agentId]);
    expect((await agentRow(first.agentId))?.replacedBy).toBe(second.agentId);
    expect((await agentRow(second.agentId))?.replacedBy).toBe(third.agentId);
  });
});

// Last in this file: it empties the database.
describe("D1 migration 0004 (names unique among live agents)", () => {
  it("keeps the agents, deployments and steps of 0003 and lets a revoked agent's name be replaced", async () => {
    const migrations = env.TEST_MIGRATIONS!;
    const index = migrations.findIndex((m) => m.name.startsWith("0004_"));
    expect(index).toBe(4);
    const tables = await env.DB.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'").all<{ name: string }>();
    for (const t of tables.results) await env.DB.prepare(`DROP TABLE "${t.name}"`).run();
    await applyD1Migrations(env.DB, migrations.slice(0, index));
    const columns = await env.DB.prepare("SELECT name FROM pragma_table_info('agents')").all<{ name: string }>();
    expect(columns.results.map((c) => c.name)).not.toContain("replaced_by");

    await env.DB.batch([
      env.DB.prepare("INSERT INTO agents (id, name, credential_hash, status, version, created_at, revoked_at, tags) VALUES ('a-old', 'web-01', 'h1', 'offline', '0.1.0', 1000, 5000, '[\"web\"]')"),
      env.DB.prepare("INSERT INTO agents (id, name, credential_hash, status, version, created_at, properties) VALUES ('a-live', 'db-01', 'h2', 'offline', '0.1.0', 1100, '{\"k\":\"v\"}')"),
      env.DB.prepare("INSERT INTO deployments (id, name, status, created_at, updated_at, finished_at) VALUES ('d-1', 'old deploy', 'succeeded', 2000, 3000, 3000)"),
      env.DB.prepare("INSERT INTO deployment_targets (deployment_id, agent_id, command_id, dispatched_at) VALUES ('d-1', 'a-old', 'd-1:a-old', 2100)"),
      env.DB.prepare(
        "INSERT INTO deployment_steps (id, deployment_id, agent_id, position, name, type, command, retry, status, exit_code) VALUES ('s-1', 'd-1', 'a-old', 0, 'build', 'shell', 'make', 'never', 'succeeded', 0)",
      ),
    ]);
    const before = await env.DB.prepare("SELECT * FROM agents ORDER BY id").all();

    await applyD1Migrations(env.DB, migrations);

    const after = await env.DB.prepare("SELECT * FROM agents ORDER BY id").all<Record<string, unknown>>();
    // Every row and column kept (later migrations may add columns of their own).
    expect(after.results).toMatchObject(before.results.map((r) => ({ ...r, replaced_by: null })));
    expect(await listedNames()).toEqual([expect.objectContaining({ id: "a-live", name: "db-01" })]);
    expect(await agentView("db-01")).toMatchObject({ id: "a-live", replaced: [] });
    // Live names are still unique in D1 itself, whatever the API checks.
    await expect(env.DB.prepare("INSERT INTO agents (id, name, credential_hash, created_at) VALUES ('dup', 'db-01', 'h3', 1)").run()).rejects.toThrow(/UNIQUE constraint failed: agents.name/);

    // The revoked agent's name: refused plainly, taken with replace.
    await expectError(await register({ token: await registrationToken(), name: "web-01" }), 409, /revoked/);
    const fresh = await replaceAgent("web-01");
    expect(await agentRow("a-old")).toEqual({ name: "web-01", revokedAt: 5000, replacedBy: fresh.agentId });
    expect(await agentView("web-01")).toMatchObject({ id: fresh.agentId, replaced: [{ id: "a-old", revokedAt: new Date(5000).toISOString() }] });
    const view = await deploymentView("d-1");
    expect(view.steps.map((s) => [s.id, s.agent, s.status])).toEqual([["s-1", "web-01", "succeeded"]]);
  });
});
