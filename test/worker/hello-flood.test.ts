// docs/protocol.md §Resync, §Presence: one hello per connection, and an agent message
// costs D1 work only when it changes something. One agent credential must not be able
// to load the single D1 for everyone by flooding its channel.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createDeployment as createRows } from "../../worker/deployments/create.ts";
import { createDeploymentBody } from "../../schema/api.ts";
import { d1 } from "../../d1/db.ts";
import { registerAgent, TestSocket, withClockAhead, type TestAgent } from "./helpers.ts";

const version = (agent: TestAgent) =>
  env.DB.prepare("SELECT version, status FROM agents WHERE id = ?").bind(agent.agentId).first<{ version: string | null; status: string }>();

// A marker D1 would lose on any presence write of the agent's hello.
const markRow = (agent: TestAgent) => env.DB.prepare("UPDATE agents SET version = 'untouched' WHERE id = ?").bind(agent.agentId).run();

const helloWith = (socket: TestSocket, v: string) =>
  socket.ws.send(JSON.stringify({ type: "hello", version: v, lastSeq: 0, running: [], reports: [], pendingReports: 0 }));

describe("hello flood", () => {
  it("refuses a second hello on the same connection (1008) without touching D1", async () => {
    const agent = await registerAgent("flood-1");
    const socket = await TestSocket.open(agent);
    helloWith(socket, "1.2.3");
    await socket.next("welcome");
    expect(await version(agent)).toEqual({ version: "1.2.3", status: "online" });
    await markRow(agent);

    helloWith(socket, "9.9.9");
    await socket.until(() => socket.closed, "the socket to close");
    expect(socket.closed).toEqual({ code: 1008, reason: "hello was already received on this connection" });
    expect(socket.messages.filter((m) => m.type === "welcome")).toHaveLength(1);
    expect((await version(agent))?.version).toBe("untouched");
  });

  it("writes presence on a reconnect's hello only when D1 would change", async () => {
    const agent = await registerAgent("flood-2");
    const first = await TestSocket.open(agent);
    helloWith(first, "1.0.0");
    await first.next("welcome");
    await markRow(agent);

    // Reconnects with the same version while D1 already shows the agent online: no write.
    for (let i = 0; i < 3; i++) {
      const again = await TestSocket.open(agent);
      helloWith(again, "1.0.0");
      await again.next("welcome");
    }
    expect((await version(agent))?.version).toBe("untouched");

    // A new version is a change: written.
    const upgraded = await TestSocket.open(agent);
    helloWith(upgraded, "2.0.0");
    await upgraded.next("welcome");
    expect(await version(agent)).toEqual({ version: "2.0.0", status: "online" });
    upgraded.ws.close(1000, "bye");
  });

  it("looks up undispatched targets in D1 at most every few seconds, however often the agent reconnects", async () => {
    const agent = await registerAgent("flood-3");
    const body = { agents: [agent.name], steps: [{ name: "x", type: "shell" as const, command: "true" }] };
    const undispatched = (id: string) => async () =>
      (await env.DB.prepare("SELECT dispatched_at AS at FROM deployment_targets WHERE deployment_id = ?").bind(id).first<{ at: number | null }>())?.at ?? null;

    // Targets left undispatched (as if their dispatch died after the D1 batch), old enough.
    // The first hello looks them up and stores what it finds (then notifies).
    const early = await createRows(d1(env), env.DB, createDeploymentBody.parse(body), Date.now() - 6000);
    const first = await TestSocket.open(agent);
    helloWith(first, "1");
    await first.next("welcome");
    await first.next("commands");
    expect(await undispatched(early.id)()).not.toBeNull();

    // Another such target; reconnecting at once does not repeat the lookup.
    const rows = await createRows(d1(env), env.DB, createDeploymentBody.parse(body), Date.now() - 6000);
    const dispatched = undispatched(rows.id);
    const second = await TestSocket.open(agent);
    helloWith(second, "1");
    await second.next("welcome");
    await new Promise((r) => setTimeout(r, 300));
    expect(await dispatched()).toBeNull();

    // Once the interval has passed, a hello looks again and dispatches it.
    await withClockAhead(6000, async () => {
      const third = await TestSocket.open(agent);
      helloWith(third, "1");
      await third.next("welcome");
      await third.next("commands");
      third.ws.close(1000, "bye");
    });
    expect(await dispatched()).not.toBeNull();
  });
});
