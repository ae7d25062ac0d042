// The agent protocol end to end inside workerd: register, WebSocket, deploy,
// notification, pull, reports (and their re-send), D1 projection, hibernation.
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Report } from "../../schema/agent-api.ts";
import type { AgentChannel } from "../../durable-objects/agent-channel.ts";
import { openLedger } from "../../durable-objects/ledger.ts";
import { agentCall, call, createDeployment, eventually, expectError, registerAgent, TestSocket, untilPullWaiting, type Cmd as Command, type DeployPull as PullResponse, type TestAgent } from "./helpers.ts";

const stub = (agent: TestAgent) => env.AGENT_CHANNEL.get(env.AGENT_CHANNEL.idFromName(agent.agentId));

async function pull(agent: TestAgent, after: number, wait = 0): Promise<PullResponse> {
  const res = await agentCall(agent, `/agent/v1/commands?after=${after}&wait=${wait}`);
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as PullResponse;
}

function postReports(agent: TestAgent, reports: Report[]): Promise<Response> {
  return agentCall(agent, "/agent/v1/reports", { method: "POST", body: JSON.stringify({ reports, sentAt: Date.now() }) });
}

function started(cmd: Command, i: number): Report {
  const s = cmd.steps[i];
  return { type: "step-started", id: `${s.stepId}:started`, deploymentId: cmd.deploymentId, stepId: s.stepId, at: Date.now() };
}
function finished(cmd: Command, i: number, status: "succeeded" | "failed", exitCode: number): Report {
  const s = cmd.steps[i];
  return { type: "step-finished", id: `${s.stepId}:finished`, deploymentId: cmd.deploymentId, stepId: s.stepId, status, exitCode, reason: null, at: Date.now() };
}

async function deployment(id: string) {
  const res = await call(`/api/v1/deployments/${id}`);
  expect(res.status).toBe(200);
  return (await res.json()) as { status: string; finishedAt: string | null; steps: { id: string; status: string; exitCode: number | null; startedAt: string | null; finishedAt: string | null }[] };
}

describe("agent protocol", () => {
  it("runs a deployment from WebSocket notification to a succeeded deployment in D1", async () => {
    const agent = await registerAgent("flow-1");
    const socket = await TestSocket.open(agent);
    socket.hello();
    const welcome = await socket.next("welcome");
    // The server asks for a ping every third of its offline threshold (20 s in these tests).
    expect(welcome).toEqual({ type: "welcome", agentId: agent.agentId, head: 0, acked: 0, applied: [], expecting: [], heartbeatMs: 6667 });

    const id = await createDeployment([agent.name], [
      { name: "build", command: "make" },
      { name: "ship", command: "make ship" },
    ]);
    expect(await socket.next("commands")).toEqual({ type: "commands", head: 1 });

    const { commands, head } = await pull(agent, 0);
    expect(head).toBe(1);
    expect(commands).toHaveLength(1);
    const cmd = commands[0];
    expect(cmd).toMatchObject({ seq: 1, type: "deploy", deploymentId: id });
    expect(cmd.steps.map((s) => [s.position, s.name, s.type === "shell" ? s.command : null, s.retry])).toEqual([
      [0, "build", "make", "never"],
      [1, "ship", "make ship", "never"],
    ]);

    // Pulling with after=1 acknowledges seq 1: nothing new.
    expect(await pull(agent, 1)).toEqual({ commands: [], head: 1, acked: 0 });
    await runInDurableObject(stub(agent), (_i: AgentChannel, state) => {
      expect(openLedger(state.storage).ackedSeq()).toBe(1);
    });

    const batch1 = [started(cmd, 0), finished(cmd, 0, "succeeded", 0), started(cmd, 1)];
    let res = await postReports(agent, batch1);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ acked: batch1.map((r) => r.id) });
    let view = await deployment(id);
    expect(view.status).toBe("running");
    expect(view.steps.map((s) => s.status)).toEqual(["succeeded", "running"]);

    const batch2 = [finished(cmd, 1, "succeeded", 0)];
    res = await postReports(agent, batch2);
    expect(await res.json()).toEqual({ acked: [batch2[0].id] });
    view = await deployment(id);
    expect(view.status).toBe("succeeded");
    expect(view.finishedAt).not.toBeNull();
    expect(view.steps.map((s) => [s.status, s.exitCode])).toEqual([["succeeded", 0], ["succeeded", 0]]);
    expect(view.steps.every((s) => s.startedAt && s.finishedAt)).toBe(true);

    // Re-sending an already applied batch (lost ack): acknowledged again, applied once.
    const replay = [{ ...finished(cmd, 0, "failed", 9), id: batch1[1].id }];
    res = await postReports(agent, replay);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ acked: [batch1[1].id] });
    view = await deployment(id);
    expect(view.status).toBe("succeeded");
    expect(view.steps[0].exitCode).toBe(0);
    await runInDurableObject(stub(agent), (_i: AgentChannel, state) => {
      const ledger = openLedger(state.storage);
      expect(ledger.outboxStats().pending).toBe(0);
      // §Reports: the command is settled, so its report ids were pruned; its steps'
      // rows in command_steps answer for them (the replay above was still acknowledged).
      expect(state.storage.sql.exec("SELECT count(*) AS n FROM applied_reports").one().n).toBe(0);
    });
    socket.ws.close(1000, "done");
  });

  it("marks a failed deployment when any step fails", async () => {
    const a = await registerAgent("fail-a");
    const b = await registerAgent("fail-b");
    const id = await createDeployment([a.name, b.name]);
    const [ca] = (await pull(a, 0)).commands;
    const [cb] = (await pull(b, 0)).commands;
    await postReports(a, [started(ca, 0), finished(ca, 0, "succeeded", 0)]);
    expect((await deployment(id)).status).toBe("running");
    await postReports(b, [started(cb, 0), finished(cb, 0, "failed", 3)]);
    const view = await deployment(id);
    expect(view.status).toBe("failed");
    expect(view.steps.map((s) => [s.status, s.exitCode])).toEqual([["succeeded", 0], ["failed", 3]]);
  });

  it("§Commands: a pull answers with the acknowledgement held before its own `after` (lost-journal safety)", async () => {
    const agent = await registerAgent("acked-before");
    await createDeployment([agent.name]);
    await createDeployment([agent.name]);
    expect((await pull(agent, 0)).acked).toBe(0);
    expect(await pull(agent, 2)).toMatchObject({ commands: [], head: 2, acked: 0 }); // acknowledges 1 and 2
    expect((await pull(agent, 2)).acked).toBe(2);
    // A journal lost and started over pulls after=0: it gets both commands back and
    // learns that the server saw them stored before; the acknowledgement never moves back.
    const again = await pull(agent, 0);
    expect(again.commands.map((c) => c.seq)).toEqual([1, 2]);
    expect(again.acked).toBe(2);
    expect((await pull(agent, 1)).acked).toBe(2);
    await runInDurableObject(stub(agent), (_i: AgentChannel, state) => {
      expect(openLedger(state.storage).ackedSeq()).toBe(2);
    });
  });

  it("resolves a long-poll pull when a command is enqueued", async () => {
    const agent = await registerAgent("poller");
    const pending = pull(agent, 0, 25);
    await untilPullWaiting(agent);
    const t0 = Date.now();
    const id = await createDeployment([agent.name]);
    const { commands, head } = await pending;
    // Released by the command, not by its 25 s wait running out (a generous bound).
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(head).toBe(1);
    expect(commands.map((c) => c.deploymentId)).toEqual([id]);
  });

  it("returns an empty answer when a long-poll times out, and 409 beyond head", async () => {
    const agent = await registerAgent("idle");
    const t0 = Date.now();
    expect(await pull(agent, 0, 1)).toEqual({ commands: [], head: 0, acked: 0 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    const body = await expectError(await agentCall(agent, "/agent/v1/commands?after=5"), 409, /beyond/);
    expect(body.head).toBe(0);
    await expectError(await agentCall(agent, "/agent/v1/commands?after=-1"), 400, /after/);
    await expectError(await agentCall(agent, "/agent/v1/commands?after=0&wait=26"), 400, /wait/);
    await expectError(await agentCall(agent, "/agent/v1/commands"), 400, /after/);
  });

  it("enqueue is idempotent by command id and seqs stay dense", async () => {
    const agent = await registerAgent("dense");
    const d1 = await createDeployment([agent.name]);
    const d2 = await createDeployment([agent.name]);
    const { commands } = await pull(agent, 0);
    expect(commands.map((c) => [c.seq, c.deploymentId])).toEqual([[1, d1], [2, d2]]);
    const again = await stub(agent).enqueue(agent.agentId, { ...commands[0], seq: undefined } as never);
    expect(again).toEqual({ seq: 1, created: false });
    expect((await pull(agent, 0)).head).toBe(2);
  });

  it("keeps agents apart: own channel, no reporting on another agent's steps", async () => {
    const a = await registerAgent("iso-a");
    const b = await registerAgent("iso-b");
    const id = await createDeployment([a.name]);
    expect((await pull(b, 0)).commands).toEqual([]);
    const [cmd] = (await pull(a, 0)).commands;
    // b reports a's step: 422 and nothing applied.
    await expectError(await postReports(b, [started(cmd, 0)]), 422, new RegExp(cmd.steps[0].stepId));
    expect((await deployment(id)).steps[0].status).toBe("pending");
    // A mixed batch — b's own step first, then a's — is refused whole: b's own report
    // is not applied either (§Reports: nothing of the batch is applied).
    const own = await createDeployment([b.name]);
    const [bCmd] = (await pull(b, 0)).commands;
    await expectError(await postReports(b, [started(bCmd, 0), finished(bCmd, 0, "succeeded", 0), started(cmd, 0)]), 422, new RegExp(cmd.steps[0].stepId));
    expect((await deployment(own)).steps[0].status).toBe("pending");
    await runInDurableObject(stub(b), (_i: AgentChannel, state) => {
      expect(state.storage.sql.exec("SELECT count(*) AS n FROM applied_reports").one().n).toBe(0);
      expect(state.storage.sql.exec("SELECT count(*) AS n FROM projection_outbox").one().n).toBe(0);
    });
    // a spoofing the identity header still lands in a's own channel.
    const res = await agentCall(a, "/agent/v1/commands?after=0", { headers: { "X-Outpost-Agent-Id": b.agentId } });
    expect(((await res.json()) as PullResponse).commands.map((c) => c.deploymentId)).toEqual([id]);
    // A report for an unknown deployment is refused too.
    await expectError(await postReports(a, [{ ...started(cmd, 0), deploymentId: "nope" }]), 422);
    await expectError(await agentCall(a, "/agent/v1/reports", { method: "POST", body: JSON.stringify({ reports: [] }) }), 400, /reports/);
  });

  it("survives eviction: the ledger stays and the hibernated socket still answers", async () => {
    const agent = await registerAgent("sleeper");
    const socket = await TestSocket.open(agent);
    socket.hello();
    await socket.next("welcome");
    await createDeployment([agent.name]);
    await socket.next("commands");

    await evictDurableObject(stub(agent));

    // Auto-response without waking the object; then the rebuilt object still counts the
    // hibernated socket as greeted (its attachment survived) and holds the ledger.
    socket.ws.send("ping");
    await socket.until(() => socket.raw.includes("pong"), "pong");
    const before = socket.messages.length;
    const status = (await (await call(`/api/v1/agents/${agent.agentId}`)).json()) as { channel: { connected: boolean; head: number } };
    expect(status.channel).toMatchObject({ connected: true, head: 1 });
    // A new command after eviction still reaches the hibernated socket.
    await createDeployment([agent.name]);
    expect(await socket.next("commands", before)).toEqual({ type: "commands", head: 2 });
    expect((await pull(agent, 0)).commands.map((c) => c.seq)).toEqual([1, 2]);
    socket.ws.close(1000, "bye");
  });

  it("tracks presence: online after hello, offline after close, older socket replaced", async () => {
    const agent = await registerAgent("present");
    const presence = () => env.DB.prepare("SELECT status, version, last_seen_at FROM agents WHERE id = ?").bind(agent.agentId).first<{ status: string; version: string; last_seen_at: number | null }>();
    const first = await TestSocket.open(agent);
    first.hello();
    await first.next("welcome");
    const online = await presence();
    expect(online?.status).toBe("online");
    expect(online?.version).toBe("1.2.3");
    expect(online?.last_seen_at).toBeGreaterThan(0);
    const listed = (await (await call("/api/v1/agents")).json()) as { agents: { name: string; status: string; lastSeenAt: string | null }[] };
    expect(listed.agents.find((x) => x.name === "present")).toMatchObject({ status: "online" });

    // An upgrade that never says hello (one the agent gave up on, arriving late) replaces
    // nothing: the socket in use still gets its notifications.
    const abandoned = await TestSocket.open(agent);
    await createDeployment([agent.name]);
    expect((await first.next("commands")).head).toBe(1);
    expect(first.closed).toBeFalsy();
    // Reconnect: the older sockets are closed once the new one says hello; presence stays online.
    const second = await TestSocket.open(agent);
    second.hello();
    await second.next("welcome");
    await first.until(() => first.closed, "the old socket to close");
    expect(first.closed?.code).toBe(4001);
    await abandoned.until(() => abandoned.closed, "the abandoned upgrade to close");
    expect(abandoned.closed?.code).toBe(4001);
    // The welcome goes out first; D1 follows, after the old connection's close is written.
    await eventually(async () => (await presence())?.status === "online", "presence online again");

    second.ws.close(1000, "shutting down");
    await eventually(async () => (await presence())?.status === "offline", "presence offline");
  });

  it("sweeps silent sockets from the alarm: closed with 4000 and presence offline", async () => {
    const agent = await registerAgent("silent");
    const presence = () => env.DB.prepare("SELECT status, last_seen_at FROM agents WHERE id = ?").bind(agent.agentId).first<{ status: string; last_seen_at: number }>();
    const socket = await TestSocket.open(agent);
    socket.hello();
    await socket.next("welcome");
    // A heartbeat within the window keeps it online and refreshes last_seen_at.
    socket.ws.send("ping");
    await socket.until(() => socket.raw.includes("pong"), "pong");
    const seenBefore = (await presence())!.last_seen_at;
    await new Promise((r) => setTimeout(r, 10));
    socket.ws.send("ping");
    await socket.until(() => socket.raw.filter((m) => m === "pong").length === 2, "second pong");
    expect(await runDurableObjectAlarm(stub(agent))).toBe(true);
    expect(socket.closed).toBeNull();
    const refreshed = (await presence())!;
    expect(refreshed.status).toBe("online");
    expect(refreshed.last_seen_at).toBeGreaterThan(seenBefore);

    // Pretend the socket was last heard from long ago (no ping since): the sweep closes it.
    await runInDurableObject(stub(agent), (_i: AgentChannel, state) => {
      for (const ws of state.getWebSockets()) ws.serializeAttachment({ ...(ws.deserializeAttachment() as object), seenAt: 0 });
    });
    const fakeNow = Date.now() + 31_000;
    const realNow = Date.now;
    Date.now = () => fakeNow;
    try {
      expect(await runDurableObjectAlarm(stub(agent))).toBe(true);
    } finally {
      Date.now = realNow;
    }
    await socket.until(() => socket.closed, "the sweep to close the socket");
    expect(socket.closed?.code).toBe(4000);
    await eventually(async () => (await presence())?.status === "offline", "presence offline");
  });

  it("closes the socket with 1008 on an invalid message", async () => {
    const agent = await registerAgent("rude");
    const socket = await TestSocket.open(agent);
    socket.ws.send(JSON.stringify({ type: "hello", version: "1" }));
    await socket.until(() => socket.closed, "close");
    expect(socket.closed?.code).toBe(1008);
    expect(socket.closed?.reason).toMatch(/invalid message/);
  });

  it("requires a WebSocket upgrade and a valid credential for the channel", async () => {
    const agent = await registerAgent("plain");
    await expectError(await agentCall(agent, "/agent/v1/channel"), 426);
    await expectError(await call("/agent/v1/channel", { headers: { upgrade: "websocket" } }, "bogus"), 401);
  });
});
