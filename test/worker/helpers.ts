// Test helpers: real requests through the Worker's default export, real D1, real DOs.
import { env, exports } from "cloudflare:workers";
import { expect } from "vitest";
import type { RegisterResponse, ServerMessage } from "../../schema/agent-api.ts";

export const ADMIN = "test-admin";
const BASE = "https://outpost.test";
// Failed authentications are counted per client address (worker/auth-failures.ts) in a
// limiter the test files share: each file calls from an address of its own.
export const CLIENT_IP = `10.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}`;

export function call(path: string, init: RequestInit = {}, token: string | null = ADMIN): Promise<Response> {
  const headers = new Headers(init.headers);
  if (!headers.has("cf-connecting-ip")) headers.set("cf-connecting-ip", CLIENT_IP);
  if (token !== null && !headers.has("authorization")) headers.set("authorization", `Bearer ${token}`);
  if (typeof init.body === "string" && !headers.has("content-type")) headers.set("content-type", "application/json");
  return exports.default.fetch(new Request(`${BASE}${path}`, { ...init, headers }));
}

export function postJson(path: string, body: unknown, token: string | null = ADMIN): Promise<Response> {
  return call(path, { method: "POST", body: JSON.stringify(body) }, token);
}

export async function expectError(res: Response, status: number, messagePart?: string | RegExp): Promise<Record<string, unknown>> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  expect(res.headers.get("content-type")).toMatch(/application\/json/);
  const body = JSON.parse(text) as Record<string, unknown>;
  expect(typeof body.error).toBe("string");
  if (messagePart !== undefined) expect(body.error).toMatch(messagePart);
  return body;
}

export async function registrationToken(): Promise<string> {
  const res = await postJson("/api/v1/registration-tokens", {});
  expect(res.status).toBe(201);
  return ((await res.json()) as { token: string }).token;
}

export type TestAgent = RegisterResponse & { name: string };

export async function registerAgent(name: string): Promise<TestAgent> {
  const token = await registrationToken();
  const res = await postJson("/agent/v1/register", { token, name, version: "1.0.0" }, null);
  expect(res.status, await res.clone().text()).toBe(201);
  return { ...((await res.json()) as RegisterResponse), name };
}

export function agentCall(agent: TestAgent, path: string, init: RequestInit = {}): Promise<Response> {
  return call(path, init, agent.credential);
}

export async function createDeployment(
  agents: string[],
  steps: { name: string; command: string }[] = [{ name: "echo", command: "echo hi" }],
  extra: { agentLostAfterSeconds?: number } = {},
): Promise<string> {
  const res = await postJson("/api/v1/deployments", { agents, steps: steps.map((s) => ({ ...s, type: "shell" })), ...extra });
  expect(res.status, await res.clone().text()).toBe(201);
  return ((await res.json()) as { id: string }).id;
}

export async function countRows(table: string): Promise<number> {
  const row = await env.DB.prepare(`SELECT count(*) AS n FROM ${table}`).first<{ n: number }>();
  return row?.n ?? 0;
}

// A WebSocket to /agent/v1/channel whose messages are queued for the test to take in order.
export class TestSocket {
  readonly messages: ServerMessage[] = [];
  readonly raw: string[] = [];
  closed: { code: number; reason: string } | null = null;
  private waiters: (() => void)[] = [];

  readonly ws: WebSocket;

  constructor(ws: WebSocket) {
    this.ws = ws;
    ws.addEventListener("message", (e) => {
      const data = typeof e.data === "string" ? e.data : new TextDecoder().decode(e.data as ArrayBuffer);
      this.raw.push(data);
      if (data !== "pong") this.messages.push(JSON.parse(data) as ServerMessage);
      this.wake();
    });
    ws.addEventListener("close", (e) => {
      this.closed = { code: e.code, reason: e.reason };
      this.wake();
    });
  }

  static async open(agent: TestAgent): Promise<TestSocket> {
    const res = await agentCall(agent, "/agent/v1/channel", { headers: { upgrade: "websocket" } });
    expect(res.status).toBe(101);
    const ws = res.webSocket!;
    ws.accept();
    return new TestSocket(ws);
  }

  private wake() {
    for (const w of this.waiters.splice(0)) w();
  }

  async until<T>(check: () => T | undefined | null | false, what: string, timeoutMs = 5000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = check();
      if (v) return v;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.raw)} closed=${JSON.stringify(this.closed)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  next<T extends ServerMessage["type"]>(type: T, after = 0): Promise<Extract<ServerMessage, { type: T }>> {
    return this.until(
      () => this.messages.slice(after).find((m): m is Extract<ServerMessage, { type: T }> => m.type === type),
      `a '${type}' message`,
    );
  }

  hello(lastSeq = 0, reports: string[] = []) {
    this.ws.send(JSON.stringify({ type: "hello", version: "1.2.3", lastSeq, running: [], reports, pendingReports: reports.length }));
  }
}

// Until the agent's channel holds a long-poll: a test that then acts proves the poll was
// waiting, rather than guessing with a sleep.
export async function untilPullWaiting(agent: TestAgent): Promise<void> {
  await eventually(async () => {
    const res = await call(`/api/v1/agents/${agent.agentId}`);
    return res.status === 200 && ((await res.json()) as { channel: { waitingPulls: number } }).channel.waitingPulls > 0;
  }, "a long-poll waiting in the channel");
}

// Polls until `check` returns a truthy value (D1 projections may finish after a response).
export async function eventually<T>(check: () => Promise<T | undefined | null | false>, what: string, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

// ---- agent-side calls and report builders shared by the protocol tests ----

// The protocol tests pull deploy commands (a cancel command has no steps).
export type Cmd = Extract<import("../../schema/agent-api.ts").Command, { type: "deploy" }>;
export type DeployPull = Omit<import("../../schema/agent-api.ts").PullResponse, "commands"> & { commands: Cmd[] };

export async function pull(agent: TestAgent, after: number, wait = 0): Promise<DeployPull> {
  const res = await agentCall(agent, `/agent/v1/commands?after=${after}&wait=${wait}`);
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as DeployPull;
}

type Rep = import("../../schema/agent-api.ts").Report;

export function postReports(agent: TestAgent, reports: Rep[]): Promise<Response> {
  return agentCall(agent, "/agent/v1/reports", { method: "POST", body: JSON.stringify({ reports, sentAt: Date.now() }) });
}

export function startedReport(cmd: Cmd, i: number): Rep {
  const s = cmd.steps[i];
  return { type: "step-started", id: `${s.stepId}:started`, deploymentId: cmd.deploymentId, stepId: s.stepId, at: Date.now() };
}

export function finishedReport(cmd: Cmd, i: number, status: import("../../schema/steps.ts").FinalStepStatus, exitCode: number | null, reason: string | null = null): Rep {
  const s = cmd.steps[i];
  return { type: "step-finished", id: `${s.stepId}:finished`, deploymentId: cmd.deploymentId, stepId: s.stepId, status, exitCode, reason, at: Date.now() };
}

export type DeploymentBody = {
  status: string;
  finishedAt: string | null;
  steps: { id: string; agent: string; status: string; exitCode: number | null; reason: string | null; finishedAt: string | null }[];
};

export async function deploymentView(id: string): Promise<DeploymentBody> {
  const res = await call(`/api/v1/deployments/${id}`);
  expect(res.status).toBe(200);
  return (await res.json()) as DeploymentBody;
}

// Runs `fn` with Date.now() moved forward (the DO runs in this isolate, so it sees it too).
export async function withClockAhead<T>(ms: number, fn: () => Promise<T>): Promise<T> {
  const realNow = Date.now;
  const fake = realNow() + ms;
  Date.now = () => fake;
  try {
    return await fn();
  } finally {
    Date.now = realNow;
  }
}

// Moves the clock from `fromMs` to `toMs` ahead of now in steps, running the Durable
// Object's alarm at each: a server that stays up, its alarm firing on time. (One jump
// would look like a server that was down meanwhile: durable-objects/uptime.ts.)
export async function tickAlarms(stub: DurableObjectStub, fromMs: number, toMs: number, stepMs = 4000): Promise<void> {
  const { runDurableObjectAlarm } = await import("cloudflare:test");
  for (let t = Math.min(fromMs + stepMs, toMs); ; t = Math.min(t + stepMs, toMs)) {
    await withClockAhead(t, async () => void (await runDurableObjectAlarm(stub)));
    if (t >= toMs) return;
  }
}
