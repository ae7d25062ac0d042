// POST /api/v1/deployments with tag targets, properties, plug-in steps and secrets
// (docs/api.md): what is checked at creation (422s naming the problem), what is kept
// and shown, and what the agent's command carries.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { PluginManifest } from "../../schema/plugin.ts";
import { agentCall, call, expectError, postJson, registerAgent, type Cmd } from "./helpers.ts";

const manifest = (version: string, extra: Partial<PluginManifest["steps"][number]> = {}): PluginManifest => ({
  id: "hello-tools",
  version,
  name: "Hello tools",
  description: "greets",
  steps: [
    {
      name: "greet",
      inputs: [
        { name: "who", type: "string", required: true, secret: false },
        { name: "times", type: "number", default: 1, required: false, secret: false },
        { name: "password", type: "string", secret: true, required: false },
      ],
      outputs: [{ name: "greeting" }],
      run: ["sh", "greet.sh"],
      ...extra,
    },
  ],
});

// Plug-in versions are rows in D1 (their upload is tested in plugins.test.ts).
async function plugin(m: PluginManifest, sha = "a".repeat(64)): Promise<void> {
  await env.DB.prepare("INSERT INTO plugins (id, version, name, description, manifest, sha256, size, uploaded_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?)")
    .bind(m.id, m.version, m.name, m.description, JSON.stringify(m), sha, Date.now())
    .run();
}

const pluginStep = (inputs: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({ name: "greet", type: "plugin", plugin: "hello-tools", step: "greet", inputs, ...extra });

describe("plug-in steps at creation", async () => {
  await plugin(manifest("1.0.0"), "1".repeat(64));
  await plugin(manifest("1.10.0"), "2".repeat(64));
  await plugin(manifest("1.2.0"), "3".repeat(64));
  expect((await postJson("/api/v1/secrets", { name: "DB_PASSWORD", value: "s3cr3t-value" })).status).toBe(201);
  const agent = await registerAgent("plug");

  it("pins the latest version, keeps the properties and sends the agent what it needs", async () => {
    const res = await postJson("/api/v1/deployments", {
      agents: [agent.name],
      properties: { env: "prod", replicas: 3 },
      steps: [
        pluginStep({ who: "${{ deployment.properties.env }}", password: "${{ secrets.DB_PASSWORD }}" }),
        { name: "after", type: "shell", command: "echo ${{ steps.greet.outputs.greeting }} $HOME" },
      ],
    });
    expect(res.status, await res.clone().text()).toBe(201);
    const { id } = (await res.json()) as { id: string };
    const view = (await (await call(`/api/v1/deployments/${id}`)).json()) as Record<string, unknown> & { steps: Record<string, unknown>[] };
    expect(view.properties).toEqual({ env: "prod", replicas: "3" });
    expect(view.targets).toEqual({ agents: ["plug"], tags: null });
    expect(view.rollout).toBeNull();
    expect(view.steps[0]).toMatchObject({ type: "plugin", plugin: { id: "hello-tools", version: "1.10.0", step: "greet" }, outputs: {}, wave: 1 });
    expect(view.steps[1]).toMatchObject({ type: "shell", plugin: null });
    expect(JSON.stringify(view)).not.toContain("s3cr3t-value");

    const pulled = (await (await agentCall(agent, "/agent/v1/commands?after=0")).json()) as { commands: Cmd[] };
    const cmd = pulled.commands[0];
    expect(cmd.context).toEqual({ agentName: "plug", agentProperties: {}, deploymentProperties: { env: "prod", replicas: "3" } });
    expect(cmd.steps[0]).toMatchObject({
      type: "plugin",
      plugin: { id: "hello-tools", version: "1.10.0", sha256: "2".repeat(64) },
      run: ["sh", "greet.sh"],
      inputs: { who: "${{ deployment.properties.env }}", password: "${{ secrets.DB_PASSWORD }}" },
      outputs: ["greeting"],
      secrets: ["DB_PASSWORD"],
    });
    expect(cmd.steps[1]).toMatchObject({ type: "shell", command: "echo ${{ steps.greet.outputs.greeting }} $HOME" });
    expect(cmd.steps[1].secrets).toBeUndefined();
    expect(JSON.stringify(pulled)).not.toContain("s3cr3t-value");

    const used = await env.DB.prepare("SELECT plugin_id AS id, version FROM deployment_plugins WHERE deployment_id = ?").bind(id).all();
    expect(used.results).toEqual([{ id: "hello-tools", version: "1.10.0" }]);
  });

  it("a named version is used as named", async () => {
    const res = await postJson("/api/v1/deployments", { agents: [agent.name], steps: [pluginStep({ who: "x" }, { version: "1.2.0" })] });
    const { id } = (await res.json()) as { id: string };
    const view = (await (await call(`/api/v1/deployments/${id}`)).json()) as { steps: { plugin: { version: string } }[] };
    expect(view.steps[0].plugin.version).toBe("1.2.0");
  });

  const refused: [string, unknown[], RegExp][] = [
    ["an unknown plug-in", [{ ...pluginStep({ who: "x" }), plugin: "nope" }], /unknown plug-in 'nope'/],
    ["an unknown version", [pluginStep({ who: "x" }, { version: "9.9.9" })], /has no version 9\.9\.9/],
    ["an unknown step", [{ ...pluginStep({ who: "x" }), step: "wave" }], /has no step 'wave'/],
    ["a missing required input", [pluginStep({ times: 2 })], /input 'who' is required/],
    ["an input of the wrong type", [pluginStep({ who: "x", times: "two" })], /input 'times' must be a number/],
    ["an undeclared input", [pluginStep({ who: "x", colour: "red" })], /has no input 'colour'/],
    ["an unknown secret in an input", [pluginStep({ who: "${{ secrets.NOPE }}" })], /unknown secret: NOPE/],
    ["an unknown secret in a command", [{ name: "s", type: "shell", command: "echo ${{secrets.MISSING}}" }], /unknown secret: MISSING/],
    ["a secret input given in clear", [pluginStep({ who: "x", password: "hunter2" })], /input 'password' is secret/],
    ["two steps with one name", [{ name: "a", type: "shell", command: "true" }, { name: "a", type: "shell", command: "true" }], /unique.*'a' is used twice/],
  ];
  for (const [what, steps, message] of refused) {
    it(`refuses ${what} with 422 and stores nothing`, async () => {
      const before = await env.DB.prepare("SELECT COUNT(*) AS n FROM deployments").first<{ n: number }>();
      await expectError(await postJson("/api/v1/deployments", { agents: [agent.name], steps }), 422, message);
      expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM deployments").first<{ n: number }>()).toEqual(before);
    });
  }

  it("an expression may stand for a number input; the agent checks its type", async () => {
    const res = await postJson("/api/v1/deployments", { agents: [agent.name], steps: [pluginStep({ who: "x", times: "${{ agent.properties.n }}" })] });
    expect(res.status, await res.clone().text()).toBe(201);
  });
});

describe("targets", () => {
  it("by tags: every live agent carrying all of them, at creation time; none → 422", async () => {
    const a = await registerAgent("tag-a");
    const b = await registerAgent("tag-b");
    const patch = (id: string, body: unknown) => call(`/api/v1/agents/${id}`, { method: "PATCH", body: JSON.stringify(body) });
    expect((await patch(a.agentId, { tags: ["t-web", "t-eu"], properties: { region: "eu-1" } })).status).toBe(200);
    const patched = await patch(b.agentId, { tags: ["t-web"] });
    expect(await patched.json()).toMatchObject({ name: "tag-b", tags: ["t-web"], properties: {} });
    await expectError(await postJson("/api/v1/deployments", { targets: { tags: ["t-none"] }, steps: [{ name: "a", type: "shell", command: "true" }] }), 422, /no agent carries the tag t-none/);

    const res = await postJson("/api/v1/deployments", { targets: { tags: ["t-web", "t-eu"] }, steps: [{ name: "a", type: "shell", command: "true" }] });
    const { id } = (await res.json()) as { id: string };
    expect((await patch(b.agentId, { tags: ["t-web", "t-eu"] })).status).toBe(200); // too late to join
    const view = (await (await call(`/api/v1/deployments/${id}`)).json()) as { targets: unknown; name: string };
    expect(view.targets).toEqual({ agents: ["tag-a"], tags: ["t-web", "t-eu"] });
    expect(view.name).toBe("deploy to tags t-web, t-eu");
    const cmd = ((await (await agentCall(a, "/agent/v1/commands?after=0")).json()) as { commands: Cmd[] }).commands[0];
    expect(cmd.context?.agentProperties).toEqual({ region: "eu-1" });

    const listed = (await (await call("/api/v1/agents")).json()) as { agents: { name: string; tags: string[] }[] };
    expect(listed.agents.find((x) => x.name === "tag-b")?.tags).toEqual(["t-web", "t-eu"]);
  });

  it("refuses both or neither of agents and targets, and bad tags or properties", async () => {
    await expectError(await postJson("/api/v1/deployments", { steps: [{ name: "a", type: "shell", command: "true" }] }), 400, /either by `agents`/);
    await expectError(await postJson("/api/v1/deployments", { agents: ["x"], targets: { tags: ["y"] }, steps: [{ name: "a", type: "shell", command: "true" }] }), 400, /not both/);
    const a = await registerAgent("tag-bad");
    await expectError(await call(`/api/v1/agents/${a.agentId}`, { method: "PATCH", body: JSON.stringify({ tags: ["no spaces"] }) }), 400, /tags/);
    await expectError(await call(`/api/v1/agents/${a.agentId}`, { method: "PATCH", body: JSON.stringify({}) }), 400, /at least one of tags, properties, concurrency, logLevel/);
    await expectError(await call(`/api/v1/agents/${a.agentId}`, { method: "PATCH", body: JSON.stringify({ properties: { "a b": "x" } }) }), 400);
    await expectError(await call(`/api/v1/agents/nope`, { method: "PATCH", body: JSON.stringify({ tags: [] }) }), 404);
    await expectError(await call(`/api/v1/agents/${a.agentId}`, { method: "PATCH", body: JSON.stringify({ tags: [] }) }, "not-a-token"), 401);
  });

  it("register --tags: tags given at registration", async () => {
    const tokenRes = await postJson("/api/v1/registration-tokens", {});
    const { token } = (await tokenRes.json()) as { token: string };
    const res = await postJson("/agent/v1/register", { token, name: "born-tagged", version: "1.0.0", tags: ["db", "eu"] }, null);
    expect(res.status).toBe(201);
    const listed = (await (await call("/api/v1/agents")).json()) as { agents: { name: string; tags: string[] }[] };
    expect(listed.agents.find((x) => x.name === "born-tagged")?.tags).toEqual(["db", "eu"]);
  });
});
