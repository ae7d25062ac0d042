// The test plays the agent itself over the agent API (docs/agent-api.md), so that what
// the page shows is driven step by step: a WebSocket that said hello makes it online,
// closing it makes it offline; commands are pulled, log bytes uploaded and results
// reported exactly when the test says.
import WebSocket from "ws";
import type { TestServer } from "../support/local-server.ts";

// A step as the deploy command carries it (schema/agent-api.ts stepToRun): a shell step
// has `command`; a plug-in step has the pinned plug-in, its argv, its inputs as written
// (expressions unresolved), their definitions and the declared outputs.
export type StepToRun = {
  stepId: string;
  position?: number;
  name: string;
  type?: "shell" | "plugin";
  command?: string;
  plugin?: { id: string; version: string; sha256: string };
  step?: string;
  run?: string[];
  inputs?: Record<string, string | number | boolean>;
  inputDefs?: { name: string; type: string; required: boolean; secret: boolean; default?: unknown }[];
  outputs?: string[];
  secrets?: string[];
};
export type Command = {
  seq: number;
  type?: "deploy";
  id?: string;
  deploymentId: string;
  context?: { deploymentProperties: Record<string, string>; agentName: string; agentProperties: Record<string, string> };
  steps: StepToRun[];
};
export type CancelCommand = { seq: number; type: "cancel"; id: string; deploymentId: string };
// docs/agent-lifecycle.md §Config, §Restart: settings the agent applies itself, and a
// request that its monitor start a new worker.
export type AgentConfig = { concurrency?: number; logLevel?: "error" | "warn" | "info" | "debug" };
export type ConfigCommand = { seq: number; type: "config"; id: string; config: AgentConfig };
export type RestartCommand = { seq: number; type: "restart"; id: string };
// docs/agent-lifecycle.md §Upgrade: the version to switch to, and the sha256 of its package.
export type UpgradeCommand = { seq: number; type: "upgrade"; id: string; version: string; sha256: string };
export type UpgradeReport = { version: string; state: "pending" | "downloading" | "verifying" | "switching" | "succeeded" | "rolled-back" | "failed"; reason: string | null };
type AnyCommand = Command | CancelCommand | ConfigCommand | RestartCommand | UpgradeCommand;

export class FakeAgent {
  agentId = "";
  credential = "";
  private lastSeq = 0;
  private readonly commands = new Map<string, Command>();
  private readonly cancels = new Map<string, CancelCommand>();
  // Config, restart and upgrade commands in the order pulled (the test consumes them).
  readonly configs: ConfigCommand[] = [];
  readonly restarts: RestartCommand[] = [];
  readonly upgrades: UpgradeCommand[] = [];
  private readonly ended = new Set<string>(); // step ids reported finished
  private ws: WebSocket | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  // The close code of the last socket, once it closed.
  closeCode: Promise<number> = Promise.resolve(0);
  // "<code> <reason>" of the last socket, once it closed.
  closed = "";

  readonly server: TestServer;
  readonly name: string;

  constructor(server: TestServer, name: string) {
    this.server = server;
    this.name = name;
  }

  // Registers with a registration token (a new one from the API unless given); `replace`
  // takes over the name of a revoked or offline agent (`register --replace`).
  async register(token?: string, opts: { replace?: boolean } = {}): Promise<this> {
    if (!token) {
      const t = await this.server.api("POST", "/api/v1/registration-tokens", {});
      if (t.status !== 201) throw new Error(`registration token: ${t.status} ${t.text}`);
      token = t.json.token as string;
    }
    const r = await this.call("POST", "/agent/v1/register", { token, name: this.name, version: "fake-1.0", ...(opts.replace ? { replace: true } : {}) }, false);
    if (r.status !== 201) throw new Error(`register ${this.name}: ${r.status} ${JSON.stringify(r.json)}`);
    this.agentId = r.json.agentId;
    this.credential = r.json.credential;
    return this;
  }

  // Opens the channel and says hello (with the config it applies, if given); resolves
  // once welcomed (the agent is then online).
  async connect(running: string[] = [], config?: AgentConfig): Promise<void> {
    const ws = new WebSocket(this.server.base.replace(/^http/, "ws") + "/agent/v1/channel", {
      headers: { authorization: `Bearer ${this.credential}` },
    });
    this.ws = ws;
    this.closeCode = new Promise((resolve) => ws.on("close", (code, reason) => {
      this.closed = `${code} ${reason.toString()}`;
      resolve(code);
    }));
    await new Promise<void>((resolve, reject) => {
      ws.once("error", reject);
      ws.on("message", (data) => {
        const text = data.toString();
        if (text === "pong") return;
        if (JSON.parse(text).type === "welcome") resolve();
      });
      ws.once("open", () =>
        ws.send(JSON.stringify({ type: "hello", version: "fake-1.0", lastSeq: this.lastSeq, running, reports: [], pendingReports: 0, ...(config ? { config } : {}) })));
      ws.once("close", (code) => reject(new Error(`channel closed (${code}) before the welcome`)));
    });
    this.heartbeat = setInterval(() => ws.readyState === WebSocket.OPEN && ws.send("ping"), 5000);
    this.heartbeat.unref();
  }

  async disconnect(): Promise<void> {
    clearInterval(this.heartbeat);
    const ws = this.ws;
    this.ws = undefined;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    ws.close(1000, "bye");
    await this.closeCode;
  }

  // After the hello: the config the agent now applies (a real worker sends this once it
  // has applied a config command).
  sendStatus(config: AgentConfig): void {
    if (this.ws?.readyState !== WebSocket.OPEN) throw new Error(`${this.name}: no open channel to send a status on${this.closed ? ` (closed: ${this.closed})` : ""}`);
    this.ws.send(JSON.stringify({ type: "status", config }));
  }

  // After the hello: how far an upgrade went (a real worker reports each state).
  sendUpgrade(upgrade: UpgradeReport): void {
    if (this.ws?.readyState !== WebSocket.OPEN) throw new Error(`${this.name}: no open channel to send a status on${this.closed ? ` (closed: ${this.closed})` : ""}`);
    this.ws.send(JSON.stringify({ type: "status", upgrade }));
  }

  // One pull of whatever commands are new: deploy commands, cancels, config changes,
  // restarts and upgrades are kept apart.
  async pull(): Promise<void> {
    const r = await this.call("GET", `/agent/v1/commands?after=${this.lastSeq}`);
    if (r.status !== 200) throw new Error(`pull: ${r.status} ${JSON.stringify(r.json)}`);
    for (const c of r.json.commands as AnyCommand[]) {
      if (c.type === "cancel") this.cancels.set(c.deploymentId, c);
      else if (c.type === "config") this.configs.push(c);
      else if (c.type === "restart") this.restarts.push(c);
      else if (c.type === "upgrade") this.upgrades.push(c);
      else this.commands.set(c.deploymentId, c);
      this.lastSeq = Math.max(this.lastSeq, c.seq);
    }
  }

  // Pulls until the deployment's command is here; returns it.
  async command(deploymentId: string, ms = 15_000): Promise<Command> {
    const t0 = Date.now();
    while (!this.commands.has(deploymentId)) {
      if (Date.now() - t0 > ms) throw new Error(`${this.name}: no command for deployment ${deploymentId} after ${ms} ms`);
      await this.pull();
      if (!this.commands.has(deploymentId)) await new Promise((r) => setTimeout(r, 100));
    }
    return this.commands.get(deploymentId)!;
  }

  // Pulls until a config (restart, upgrade) command not yet taken is here; takes and returns it.
  async nextConfig(ms = 15_000): Promise<ConfigCommand> {
    return this.next(this.configs, "config", ms);
  }

  async nextRestart(ms = 15_000): Promise<RestartCommand> {
    return this.next(this.restarts, "restart", ms);
  }

  async nextUpgrade(ms = 15_000): Promise<UpgradeCommand> {
    return this.next(this.upgrades, "upgrade", ms);
  }

  private async next<T>(queue: T[], what: string, ms: number): Promise<T> {
    const t0 = Date.now();
    while (queue.length === 0) {
      if (Date.now() - t0 > ms) throw new Error(`${this.name}: no ${what} command after ${ms} ms`);
      await this.pull();
      if (queue.length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    return queue.shift()!;
  }

  // Whether the deployment's command has reached this agent (after one more pull).
  async hasCommand(deploymentId: string): Promise<boolean> {
    await this.pull();
    return this.commands.has(deploymentId);
  }

  // Pulls until the deployment's cancel command is here; returns it.
  async cancelCommand(deploymentId: string, ms = 15_000): Promise<CancelCommand> {
    const t0 = Date.now();
    while (!this.cancels.has(deploymentId)) {
      if (Date.now() - t0 > ms) throw new Error(`${this.name}: no cancel for deployment ${deploymentId} after ${ms} ms`);
      await this.pull();
      if (!this.cancels.has(deploymentId)) await new Promise((r) => setTimeout(r, 100));
    }
    return this.cancels.get(deploymentId)!;
  }

  // Answers a cancel as the real agent does (docs/protocol.md §Cancel): every step of the
  // deployment it has not reported finished is reported `canceled`. Returns their ids.
  async cancelUnfinished(deploymentId: string): Promise<string[]> {
    await this.cancelCommand(deploymentId);
    const cmd = this.commands.get(deploymentId);
    const open = (cmd?.steps ?? []).map((s) => s.stepId).filter((id) => !this.ended.has(id));
    for (const stepId of open) await this.finished(deploymentId, stepId, { status: "canceled", exitCode: null, reason: "canceled" });
    return open;
  }

  async putLog(stepId: string, offset: number, bytes: Uint8Array): Promise<number> {
    const r = await fetch(`${this.server.base}/agent/v1/steps/${stepId}/log?offset=${offset}`, {
      method: "PUT",
      headers: { authorization: `Bearer ${this.credential}`, "content-type": "application/octet-stream" },
      body: bytes.slice(), // a copy on its own ArrayBuffer, as fetch's types want
    });
    const body = await r.json();
    if (r.status !== 200) throw new Error(`log upload: ${r.status} ${JSON.stringify(body)}`);
    return body.length;
  }

  // Uploads the bytes in chunks of at most 256 KiB (the server's limit per request).
  async putWholeLog(stepId: string, bytes: Uint8Array): Promise<void> {
    for (let offset = 0; offset < bytes.length; offset += 256 * 1024) {
      await this.putLog(stepId, offset, bytes.subarray(offset, Math.min(bytes.length, offset + 256 * 1024)));
    }
  }

  async started(deploymentId: string, stepId: string, at = Date.now()): Promise<void> {
    await this.report([{ type: "step-started", id: `${stepId}:started`, deploymentId, stepId, at }]);
  }

  async finished(deploymentId: string, stepId: string,
    result: { status?: string; exitCode?: number | null; reason?: string | null; at?: number; outputs?: Record<string, string> } = {}) {
    await this.report([{
      type: "step-finished", id: `${stepId}:finished`, deploymentId, stepId,
      status: result.status ?? "succeeded", exitCode: result.exitCode === undefined ? 0 : result.exitCode, reason: result.reason ?? null, at: result.at ?? Date.now(),
      ...(result.outputs ? { outputs: result.outputs } : {}),
    }]);
    this.ended.add(stepId);
  }

  // Runs a whole one-step command: pull, output, started, finished.
  async run(deploymentId: string, output: string, result: Parameters<FakeAgent["finished"]>[2] = {}): Promise<string> {
    const cmd = await this.command(deploymentId);
    const stepId = cmd.steps[0].stepId;
    await this.started(deploymentId, stepId);
    if (output) await this.putWholeLog(stepId, Buffer.from(output));
    await this.finished(deploymentId, stepId, result);
    return stepId;
  }

  private async report(reports: unknown[]): Promise<void> {
    const r = await this.call("POST", "/agent/v1/reports", { reports, sentAt: Date.now() });
    if (r.status !== 200) throw new Error(`reports: ${r.status} ${JSON.stringify(r.json)}`);
  }

  private async call(method: string, path: string, body?: unknown, auth = true): Promise<{ status: number; json: any }> {
    const r = await fetch(this.server.base + path, {
      method,
      headers: { ...(auth ? { authorization: `Bearer ${this.credential}` } : {}), ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await r.text();
    let json: any;
    try { json = JSON.parse(text); } catch { json = text; }
    return { status: r.status, json };
  }
}
