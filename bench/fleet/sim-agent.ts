// A simulated Outpost agent for the fleet benchmark (`npm run bench:fleet`): one
// in-process object per agent that speaks the real agent protocol
// (docs/protocol.md, docs/agent-api.md) over a real WebSocket and real HTTP, with
// its journal in memory and steps that "run" instantly (started, then finished
// with exit code 0, no output: with no output there is no log to upload).
//
// It follows the real worker (agent/worker/*.ts) and reuses its pure parts, so the
// bench measures the real agent's behaviour, not an idealised one:
//   - the channel (channel.ts): hello first, welcome → resync, `commands {head}` →
//     pull, "ping" every 10 s, reconnect after 30 s of silence, reconnect delays from
//     the agent's own reconnect delays (ReconnectDelay in agent/worker/channel.ts; other loops: agent/backoff.ts →
//     schema/backoff.ts), 4003 / revoked 401 stops it for good;
//   - the puller (command-puller.ts): pulls on head > lastSeq, right after storing
//     new commands, every 5 min while the channel is up, back-to-back long polls
//     (wait=25) while it is down — the first pull of a starting worker included;
//     pulled commands are sorted by the agent's own classifyCommands and stored
//     before the next pull acknowledges them;
//   - the report sender (report-sender.ts): the outbox oldest first, ≤ 100 per
//     batch (sendablePrefix), deleted only once acknowledged, back-off on transient
//     failures, cut short by a welcome;
//   - the resync (resync.ts): planResync decides what the welcome means.
//
// What it records for the fleet driver: every connect attempt and welcome (times),
// how many times each step id was run, and every problem, sorted into
// `protocol` (the server broke the contract, or answered something the protocol
// does not allow: the bench fails), `server` (5xx, 1011, 4000: the server's own
// trouble) and `transient` (network errors, abnormal closes: expected while the
// server is down).
import { performance } from "node:perf_hooks";
import WebSocket from "ws";
import {
  agentMessage,
  CLOSE,
  isRevokedAnswer,
  pullConflictResponse,
  pullResponse,
  registerRequest,
  registerResponse,
  reportIds,
  reportsResponse,
  serverMessage,
  type AgentMessage,
  type Command,
  type PullResponse,
  type Report,
  type WelcomeMessage,
} from "../../schema/agent-api.ts";
import { HEARTBEAT_PING, HEARTBEAT_PONG, LIMITS, TIMING } from "../../schema/limits.ts";
import type { FinalStepStatus, StepStatus } from "../../schema/steps.ts";
import type { AgentConfig } from "../../schema/api.ts";
import { Backoff } from "../../agent/backoff.ts";
import { ReconnectDelay } from "../../agent/worker/channel.ts";
import { classifyCommands } from "../../agent/worker/command-intake.ts";
import { PERIODIC_PULL_MS } from "../../agent/worker/command-puller.ts";
import { sendablePrefix } from "../../agent/worker/report-sender.ts";
import { planResync, type StepFact } from "../../agent/worker/resync.ts";
import { finishedReport, NO_RECORD_REASON, startedReport } from "../../agent/worker/reports.ts";
import type { OutboxEntry } from "../../agent/worker/journal-outbox.ts";
import { Waker } from "../../agent/worker/waker.ts";

type Hello = Extract<AgentMessage, { type: "hello" }>;

const REQUEST_TIMEOUT_MS = 30_000; // api-client.ts
const MIN_LONG_POLL_CYCLE_MS = 1_000; // command-puller.ts
const REJECTED_RETRY_MS = 30_000; // any other 4xx: retried every 30 s, never dropped
const HANDSHAKE_TIMEOUT_MS = 15_000; // channel.ts

export type ProblemKind = "protocol" | "server" | "transient";
export type Problem = { at: number; agent: string; kind: ProblemKind; what: string };

// The monotonic clock every time the bench measures is read from (ms).
export const now = (): number => performance.now();

// A step as this agent's journal holds it.
type Outcome = { status: FinalStepStatus; exitCode: number | null; reason: string | null };
type JournalStep = { stepId: string; deploymentId: string; position: number; state: StepStatus; outcome: Outcome | null; finishedAt: number };

// An answer the HTTP helper hands back; a network failure is `status: null`.
type HttpAnswer = { status: number | null; body: unknown; error?: string };

// POST /agent/v1/register with a single-use token: the agent's id and credential.
export async function registerSimAgent(base: string, req: { token: string; name: string; version: string; tags: string[] }): Promise<{ agentId: string; credential: string }> {
  const body = registerRequest.parse({ ...req, hostname: "fleet-bench" });
  const res = await fetch(`${base}/agent/v1/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    redirect: "manual",
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`POST /agent/v1/register (${req.name}): HTTP ${res.status} ${text.slice(0, 300)}`);
  const parsed = registerResponse.parse(JSON.parse(text));
  return { agentId: parsed.agentId, credential: parsed.credential };
}

export type SimAgentOptions = {
  base: string; // http://127.0.0.1:PORT
  name: string;
  agentId: string;
  credential: string;
  version: string;
  config?: AgentConfig; // what the hello says the agent applies (the real worker always sends it)
};

export class SimAgent {
  readonly name: string;
  readonly agentId: string;
  readonly #opts: SimAgentOptions;
  readonly #wsUrl: string;

  // ---- the in-memory journal ----
  #lastSeq = 0;
  readonly #commandIds = new Set<string>();
  readonly #steps = new Map<string, JournalStep>();
  readonly #outbox = new Map<string, OutboxEntry>(); // insertion order = oldest first
  #outboxOrder = 0;
  readonly #canceled = new Set<string>();
  readonly #toRun: Command[] = [];

  // ---- what the bench reads ----
  readonly runs = new Map<string, number>(); // step id → times this agent ran it
  readonly connectAttempts: number[] = []; // WebSocket connect attempts (now())
  readonly pullAttempts: number[] = []; // GET /agent/v1/commands sent (now())
  readonly welcomes: number[] = []; // welcome received, one per connection (now())
  // Where a connection's time goes: connect attempt → 101 (upgrade), hello sent → welcome.
  readonly upgradeMs: { at: number; ms: number }[] = [];
  readonly helloToWelcomeMs: { at: number; ms: number }[] = [];
  // Every HTTP request's latency, by route (pull long polls that waited are left out).
  readonly httpMs: { at: number; route: string; ms: number }[] = [];
  readonly problems: Problem[] = [];
  readonly closes: { at: number; code: number; reason: string; opened: boolean }[] = []; // opened: it got its 101
  readonly statuses = new Map<string, number>(); // "GET /agent/v1/commands 200" → count
  reportsAckedAt = 0; // last time a report batch was acknowledged (now())
  startedAt = 0;

  // ---- the channel ----
  #ws: WebSocket | null = null;
  #up = false; // the current socket's hello was answered
  #stopped = false;
  #revoked = false;
  #reconnectTimer: NodeJS.Timeout | null = null;
  readonly #reconnects = new ReconnectDelay();

  // ---- the puller ----
  readonly #pullWaker = new Waker();
  readonly #abort = new AbortController();
  #kicked = true;
  #channelUp = false;
  #pullLoop: Promise<void> = Promise.resolve();

  // ---- the report sender ----
  readonly #sendWaker = new Waker();
  readonly #sendBackoff = new Backoff();
  #sending = false;
  #sendAgain = false;
  #waitingAfterFailure = false;

  constructor(opts: SimAgentOptions) {
    this.#opts = opts;
    this.name = opts.name;
    this.agentId = opts.agentId;
    const u = new URL("/agent/v1/channel", opts.base);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    this.#wsUrl = u.toString();
  }

  // A socket is open and its hello was answered.
  get connected(): boolean {
    return this.#up;
  }

  get outboxSize(): number {
    return this.#outbox.size;
  }

  get lastSeq(): number {
    return this.#lastSeq;
  }

  // As the worker starts: the puller first (its first pull is a long poll: the
  // channel is not up yet), then the channel.
  start(): void {
    this.startedAt = now();
    this.#pullLoop = this.#pullForever();
    this.#connect();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#abort.abort();
    this.#pullWaker.wake();
    this.#sendWaker.wake();
    const ws = this.#ws;
    if (ws) {
      ws.close(1001, "agent stopping");
      setTimeout(() => ws.terminate(), 1_000).unref();
    }
    await this.#pullLoop;
  }

  #problem(kind: ProblemKind, what: string): void {
    this.problems.push({ at: now(), agent: this.name, kind, what });
  }

  #countStatus(route: string, status: number | null): void {
    const key = `${route} ${status ?? "network error"}`;
    this.statuses.set(key, (this.statuses.get(key) ?? 0) + 1);
  }

  // ---------------------------------------------------------------- channel --

  #hello(): Hello {
    return {
      type: "hello",
      version: this.#opts.version,
      lastSeq: this.#lastSeq,
      running: [...this.#steps.values()].filter((s) => s.state === "running").map((s) => s.stepId).slice(0, 1000),
      reports: [...this.#outbox.keys()].slice(0, 1000),
      pendingReports: this.#outbox.size,
      ...(this.#opts.config ? { config: this.#opts.config } : {}),
    };
  }

  #connect(): void {
    const attemptAt = now();
    this.connectAttempts.push(attemptAt);
    const ws = new WebSocket(this.#wsUrl, {
      headers: { authorization: `Bearer ${this.#opts.credential}` },
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      maxPayload: LIMITS.wsMessageBytes,
      followRedirects: false,
    });
    this.#ws = ws;
    let openedAt: number | null = null;
    let lastHeard = Date.now();
    let heartbeat: NodeJS.Timeout | null = null;
    let sentHello: Hello | null = null;
    let helloSentAt = 0;
    let welcomed = false;
    let refusedRevoked = false;

    // The upgrade answered with a plain HTTP response: a 401 with code "agent-revoked"
    // is final; anything else is retried like a failed connection.
    ws.on("unexpected-response", (_req, res) => {
      const status = res.statusCode ?? 0;
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        let body: unknown = null;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        } catch {
          /* not JSON */
        }
        this.#countStatus("GET /agent/v1/channel (upgrade)", status);
        refusedRevoked = isRevokedAnswer(status, body);
        const what = `WebSocket upgrade answered HTTP ${status}: ${JSON.stringify(body)?.slice(0, 200)}`;
        this.#problem(status >= 500 ? "server" : "protocol", what);
        ws.terminate();
      });
    });

    ws.on("open", () => {
      openedAt = Date.now();
      lastHeard = openedAt;
      this.#countStatus("GET /agent/v1/channel (upgrade)", 101);
      this.upgradeMs.push({ at: attemptAt, ms: now() - attemptAt });
      heartbeat = setInterval(() => {
        if (Date.now() - lastHeard > TIMING.offlineAfterMs) {
          this.#problem("server", `channel silent for ${Math.round((Date.now() - lastHeard) / 1000)} s; reconnecting`);
          ws.terminate();
          return;
        }
        ws.send(HEARTBEAT_PING, () => undefined);
      }, TIMING.heartbeatMs);
      sentHello = this.#hello();
      helloSentAt = now();
      ws.send(JSON.stringify(agentMessage.parse(sentHello)));
    });

    ws.on("message", (data, isBinary) => {
      lastHeard = Date.now();
      if (isBinary) return this.#problem("protocol", "a binary message on the channel");
      const text = data.toString();
      if (text === HEARTBEAT_PONG) return;
      let msg: unknown;
      try {
        msg = JSON.parse(text);
      } catch {
        return this.#problem("protocol", `a non-JSON channel message (${text.length} characters)`);
      }
      const parsed = serverMessage.safeParse(msg);
      if (!parsed.success) return this.#problem("protocol", `an invalid channel message: ${text.slice(0, 200)}`);
      if (parsed.data.type === "commands") return this.#notifyHead(parsed.data.head);
      if (sentHello === null) return this.#problem("protocol", "a welcome before our hello");
      if (welcomed) return this.#problem("protocol", "a second welcome on one connection");
      welcomed = true;
      this.welcomes.push(now());
      this.helloToWelcomeMs.push({ at: helloSentAt, ms: now() - helloSentAt });
      this.#up = true;
      this.#setChannelUp(true);
      this.#resync(sentHello, parsed.data);
    });

    ws.on("error", (e) => {
      // 'close' follows. A refused connection while the server is down is everyday life.
      this.#problem("transient", `channel error: ${(e as NodeJS.ErrnoException).code ?? e.message}`);
    });

    ws.on("close", (code, reasonBytes) => {
      if (heartbeat) clearInterval(heartbeat);
      const reason = reasonBytes.toString();
      this.closes.push({ at: now(), code, reason, opened: openedAt !== null });
      const wasUp = this.#up;
      if (this.#ws === ws) {
        this.#ws = null;
        this.#up = false;
      }
      if (wasUp) this.#setChannelUp(false);
      if (this.#stopped) return;
      if (openedAt !== null) this.#judgeClose(code, reason);
      if (code === CLOSE.revoked || refusedRevoked) {
        this.#revoked = true;
        this.#problem("protocol", `revoked by the server (${code === CLOSE.revoked ? "close 4003" : "401 agent-revoked"}): the fleet never revokes`);
        return void this.stop();
      }
      const delay = this.#reconnects.next(openedAt, Date.now());
      this.#reconnectTimer = setTimeout(() => {
        this.#reconnectTimer = null;
        if (!this.#stopped) this.#connect();
      }, delay);
    });
  }

  // Close codes the server may use (docs/agent-api.md): which of them are the
  // contract broken, which the server's own trouble, which everyday life.
  #judgeClose(code: number, reason: string): void {
    const what = `channel closed ${code}${reason ? ` (${reason})` : ""}`;
    if (code === CLOSE.policy || code === CLOSE.tooBig) this.#problem("protocol", what);
    // 4001 on this agent's only socket: the server took an abandoned connection attempt
    // (one whose handshake this agent gave up on) for a newer connection.
    else if (code === CLOSE.replaced) this.#problem("server", `${what} — this agent had no other connection open`);
    else if (code === CLOSE.internal || code === CLOSE.noHeartbeat) this.#problem("server", what);
    else if (code !== 1000 && code !== 1001) this.#problem("transient", what);
  }

  // docs/protocol.md §Resync, with the real agent's planResync.
  #resync(hello: Hello, welcome: WelcomeMessage): void {
    if (welcome.agentId !== this.agentId) this.#problem("protocol", `welcome names agent ${welcome.agentId}, this is ${this.agentId}`);
    const facts = new Map<string, StepFact>();
    for (const stepId of new Set(welcome.expecting)) {
      const s = this.#steps.get(stepId);
      if (s) facts.set(stepId, { state: s.state, finishedReportQueued: this.#outbox.has(reportIds.finished(stepId)) });
    }
    const plan = planResync(hello, welcome, facts);
    if (plan.journalBehind) this.#problem("protocol", `welcome.acked ${welcome.acked} > hello.lastSeq ${hello.lastSeq}: the server thinks this journal lost commands`);
    for (const id of plan.deleteApplied) this.#outbox.delete(id);
    for (const stepId of plan.resend) {
      const s = this.#steps.get(stepId)!;
      if (s.outcome) this.#queue(finishedReport(stepId, s.deploymentId, s.outcome, s.finishedAt));
    }
    for (const stepId of plan.interrupt) {
      // This journal never loses anything: a step the server expects that it has no
      // record of means the server expects a result for a step it never handed over.
      this.#problem("protocol", `welcome expects step ${stepId}, which this agent was never given (${NO_RECORD_REASON})`);
    }
    this.#sendRetryNow();
    this.#notifyHead(welcome.head);
  }

  // --------------------------------------------------------------- commands --

  #notifyHead(head: number): void {
    if (head > this.#lastSeq) this.#kickPull();
  }

  #setChannelUp(up: boolean): void {
    if (this.#channelUp === up) return;
    this.#channelUp = up;
    this.#kickPull();
  }

  #kickPull(): void {
    this.#kicked = true;
    this.#pullWaker.wake();
  }

  async #pullForever(): Promise<void> {
    const backoff = new Backoff();
    while (!this.#stopped) {
      if (!this.#kicked && this.#channelUp) await this.#pullWaker.wait(PERIODIC_PULL_MS);
      if (this.#stopped) break;
      this.#kicked = false;
      const wait = this.#channelUp ? 0 : LIMITS.longPollSeconds;
      const t0 = Date.now();
      const outcome = await this.#pull(wait);
      if (this.#stopped) break;
      if (outcome.kind === "retry" || outcome.kind === "rejected") {
        await this.#pullWaker.wait(outcome.kind === "retry" ? backoff.next() : REJECTED_RETRY_MS);
        this.#kicked = true;
        continue;
      }
      backoff.reset();
      const res = outcome.res;
      const storedAny = this.#store(res);
      if (res.head > this.#lastSeq || storedAny) this.#kicked = true;
      else if (!this.#channelUp && res.commands.length === 0 && Date.now() - t0 < MIN_LONG_POLL_CYCLE_MS) await this.#pullWaker.wait(MIN_LONG_POLL_CYCLE_MS);
    }
  }

  async #pull(wait: number): Promise<{ kind: "ok"; res: PullResponse } | { kind: "retry" } | { kind: "rejected" }> {
    const route = "GET /agent/v1/commands";
    this.pullAttempts.push(now());
    const a = await this.#http("GET", `/agent/v1/commands?after=${this.#lastSeq}&wait=${wait}`, undefined, REQUEST_TIMEOUT_MS + wait * 1000);
    this.#countStatus(route, a.status);
    if (a.status === null) return { kind: "retry" };
    if (a.status === 200) {
      const parsed = pullResponse.safeParse(a.body);
      if (!parsed.success) {
        this.#problem("protocol", `${route}: an answer that is not a pullResponse: ${parsed.error.issues[0]?.message}`);
        return { kind: "retry" };
      }
      return { kind: "ok", res: parsed.data };
    }
    return this.#refused(route, a.status, a.body);
  }

  // Sorts and stores pulled commands in one go (the journal transaction), then
  // schedules the new deploy commands to run. True when something new was stored.
  #store(res: PullResponse): boolean {
    const intake = classifyCommands(res.commands, this.#lastSeq, res.acked);
    if (intake.problem) this.#problem("protocol", `pulled commands: ${intake.problem}`);
    let storedAny = false;
    for (const item of intake.items) {
      if (item.kind !== "valid") {
        this.#problem("protocol", `command seq ${item.seq} ${item.kind === "lost" ? "is at or below the server's acked but was never stored here" : `fails validation: ${item.reason}`}`);
        this.#lastSeq = Math.max(this.#lastSeq, item.seq);
        storedAny = true;
        continue;
      }
      const c = item.command;
      this.#lastSeq = Math.max(this.#lastSeq, c.seq);
      if (this.#commandIds.has(c.id)) {
        this.#problem("protocol", `command ${c.id} handed out again under seq ${c.seq}: ignored (never run twice)`);
        continue;
      }
      this.#commandIds.add(c.id);
      storedAny = true;
      if (c.type === "deploy") {
        for (const s of c.steps) {
          if (this.#steps.has(s.stepId)) {
            this.#problem("protocol", `step ${s.stepId} arrives again in command ${c.id}`);
            continue;
          }
          this.#steps.set(s.stepId, { stepId: s.stepId, deploymentId: c.deploymentId, position: s.position, state: "pending", outcome: null, finishedAt: 0 });
        }
        this.#toRun.push(c);
      } else if (c.type === "cancel") {
        this.#canceled.add(c.deploymentId);
      } else if (c.type === "config") {
        // Applied at once, and said (agent/worker/controls.ts).
        const ws = this.#ws;
        if (ws && this.#up && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(agentMessage.parse({ type: "status", config: c.config })));
      } else {
        this.#problem("protocol", `a ${c.type} command (seq ${c.seq}): the fleet never asks for one`);
      }
    }
    if (this.#toRun.length > 0) setImmediate(() => this.#runStored());
    return storedAny;
  }

  // Steps "run" instantly, in order: started (journaled before the spawn would be),
  // then succeeded with exit code 0 — each state change with its report.
  #runStored(): void {
    const commands = this.#toRun.splice(0);
    for (const c of commands) {
      if (c.type !== "deploy") continue;
      for (const s of [...c.steps].sort((a, b) => a.position - b.position)) {
        const step = this.#steps.get(s.stepId);
        if (!step || step.state !== "pending") continue;
        if (this.#canceled.has(c.deploymentId)) {
          this.#finish(step, { status: "canceled", exitCode: null, reason: "canceled: the deployment was canceled" });
          continue;
        }
        this.runs.set(s.stepId, (this.runs.get(s.stepId) ?? 0) + 1);
        step.state = "running";
        this.#queue(startedReport(s.stepId, c.deploymentId, Date.now()));
        this.#finish(step, { status: "succeeded", exitCode: 0, reason: null });
      }
    }
    this.#kickSend();
  }

  #finish(step: JournalStep, outcome: Outcome): void {
    step.state = outcome.status;
    step.outcome = outcome;
    step.finishedAt = Date.now();
    this.#queue(finishedReport(step.stepId, step.deploymentId, outcome, step.finishedAt));
  }

  // ---------------------------------------------------------------- reports --

  #queue(report: Report): void {
    this.#outbox.set(report.id, { order: ++this.#outboxOrder, id: report.id, report, createdAt: Date.now() });
  }

  #kickSend(): void {
    if (this.#stopped) return;
    this.#sendAgain = true;
    if (!this.#sending) void this.#sendAll();
  }

  // A welcome: the server is reachable again, cut a back-off short.
  #sendRetryNow(): void {
    this.#sendBackoff.reset();
    if (this.#waitingAfterFailure) this.#sendWaker.wake();
    this.#kickSend();
  }

  async #sendAll(): Promise<void> {
    this.#sending = true;
    try {
      while (!this.#stopped) {
        this.#sendAgain = false;
        const { batch, retryInMs } = await sendablePrefix([...this.#outbox.values()].slice(0, LIMITS.reportsPerBatch), async () => true);
        if (batch.length === 0) {
          if (this.#sendAgain) continue;
          if (retryInMs !== null) setTimeout(() => this.#kickSend(), retryInMs + 1).unref();
          break;
        }
        await this.#post(batch);
      }
    } finally {
      this.#sending = false;
    }
  }

  async #post(batch: OutboxEntry[]): Promise<void> {
    const route = "POST /agent/v1/reports";
    const a = await this.#http("POST", "/agent/v1/reports", { reports: batch.map((e) => e.report), sentAt: Date.now() });
    this.#countStatus(route, a.status);
    if (a.status === 200) {
      const parsed = reportsResponse.safeParse(a.body);
      if (!parsed.success) {
        this.#problem("protocol", `${route}: an answer that is not a reportsResponse`);
        return this.#pause(this.#sendBackoff.next());
      }
      const acked = new Set(parsed.data.acked);
      for (const e of batch) if (acked.has(e.id)) this.#outbox.delete(e.id);
      this.reportsAckedAt = now();
      this.#sendBackoff.reset();
      const missing = batch.filter((e) => !acked.has(e.id));
      if (missing.length > 0) {
        this.#problem("protocol", `${route}: acknowledged ${batch.length - missing.length} of ${batch.length}; not ${missing[0].id}`);
        if (missing.length === batch.length) await this.#pause(this.#sendBackoff.next());
      }
      return;
    }
    const outcome = a.status === null ? { kind: "retry" as const } : this.#refused(route, a.status, a.body);
    await this.#pause(outcome.kind === "retry" ? this.#sendBackoff.next() : REJECTED_RETRY_MS);
  }

  async #pause(ms: number): Promise<void> {
    this.#waitingAfterFailure = true;
    try {
      await this.#sendWaker.wait(ms);
    } finally {
      this.#waitingAfterFailure = false;
    }
  }

  // ------------------------------------------------------------------- http --

  // A non-2xx answer, sorted as the real agent sorts it (agent/errors.ts shouldRetry):
  // 5xx, 408, 429 and a plain 401 are retried with back-off; a revoked 401 stops the
  // agent; any other 4xx is held (retried every 30 s). Every one of them is recorded.
  #refused(route: string, status: number, body: unknown): { kind: "retry" } | { kind: "rejected" } {
    const a = { status, body };
    const what = `${route}: HTTP ${a.status} ${JSON.stringify(a.body)?.slice(0, 300)}`;
    if (isRevokedAnswer(a.status, a.body)) {
      this.#problem("protocol", `${what} (revoked: the fleet never revokes)`);
      this.#revoked = true;
      void this.stop();
      return { kind: "rejected" };
    }
    if (a.status >= 500) {
      this.#problem("server", what);
      return { kind: "retry" };
    }
    if (a.status === 409 && route.startsWith("GET") && pullConflictResponse.safeParse(a.body).success) {
      this.#problem("protocol", `${what}: the server's head is behind this journal's lastSeq ${this.#lastSeq}`);
      return { kind: "retry" };
    }
    this.#problem("protocol", what);
    return a.status === 401 || a.status === 408 || a.status === 429 ? { kind: "retry" } : { kind: "rejected" };
  }

  async #http(method: string, path: string, json?: unknown, timeoutMs = REQUEST_TIMEOUT_MS): Promise<HttpAnswer> {
    const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(timeoutMs)]);
    const t0 = now();
    const route = `${method} ${path.split("?")[0]}`;
    try {
      const res = await fetch(this.#opts.base + path, {
        method,
        headers: { authorization: `Bearer ${this.#opts.credential}`, ...(json === undefined ? {} : { "content-type": "application/json" }) },
        body: json === undefined ? undefined : JSON.stringify(json),
        redirect: "manual",
        signal,
      });
      const text = await res.text();
      let body: unknown = text;
      try {
        body = text.length > 0 ? JSON.parse(text) : text;
      } catch {
        /* keep the text */
      }
      const waited = path.includes("wait=") && !path.endsWith("wait=0");
      if (!waited) this.httpMs.push({ at: t0, route, ms: now() - t0 });
      return { status: res.status, body };
    } catch (e) {
      if (!this.#stopped) this.#problem("transient", `${method} ${path.split("?")[0]}: ${describeFetchError(e)}`);
      return { status: null, body: null, error: describeFetchError(e) };
    }
  }

  get revoked(): boolean {
    return this.#revoked;
  }
}

function describeFetchError(e: unknown): string {
  const cause = (e as { cause?: { code?: string; message?: string } })?.cause;
  return cause?.code ?? cause?.message ?? (e instanceof Error ? e.message : String(e));
}
