// Test support: a real Outpost server (scripts/server.ts → wrangler dev → workerd)
// and real agent processes (the outpost-agent CLI), each in its own process
// group on 127.0.0.1, stopped by process group, never by name.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, mkdirSync, createWriteStream } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";

export const projectRoot = join(import.meta.dirname, "..", "..");
const agentBin = join(projectRoot, "agent/bin/outpost-agent.mjs");

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

export type Proc = { child: ChildProcess; pid: number; logFile: string; exited: Promise<number | null>; stop(signal?: NodeJS.Signals): Promise<void> };

// Starts a command in a new process group, output appended to logFile.
export function startProc(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; logFile: string }): Proc {
  const child = spawn(cmd, args, { cwd: opts.cwd ?? projectRoot, env: { ...process.env, ...opts.env }, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const log = createWriteStream(opts.logFile, { flags: "a" });
  child.stdout!.pipe(log, { end: false });
  child.stderr!.pipe(log, { end: false });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const signalGroup = (sig: NodeJS.Signals) => {
    try { process.kill(-child.pid!, sig); } catch { /* gone */ }
  };
  return {
    child, pid: child.pid!, logFile: opts.logFile, exited,
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) {
        signalGroup(signal);
        const t = setTimeout(() => signalGroup("SIGKILL"), 10_000);
        await exited;
        clearTimeout(t);
      }
      signalGroup("SIGKILL"); // anything the leader left behind in its group
    },
  };
}

export type Api = { status: number; json: any; text: string };

export class TestServer {
  base = "";
  port = 0;
  proc: Proc | undefined;
  readonly adminToken = "test-admin-" + Math.random().toString(36).slice(2);
  readonly work: string;
  readonly stateDir: string;

  constructor(work = mkdtempSync(join(tmpdir(), "outpost-test-"))) {
    this.work = work;
    this.stateDir = join(work, "state");
  }

  // Starts (or restarts, on the same port and state) the server and waits until it answers.
  async start(port?: number) {
    this.port = port ?? (this.port || (await freePort()));
    this.base = `http://127.0.0.1:${this.port}`;
    this.proc = startProc(process.execPath, [join(projectRoot, "scripts/server.ts")], {
      env: { PORT: String(this.port), OUTPOST_ADMIN_TOKEN: this.adminToken, OUTPOST_STATE_DIR: this.stateDir, OUTPOST_LOG_LEVEL: "warn" },
      logFile: join(this.work, "server.log"),
    });
    const t0 = Date.now();
    for (;;) {
      try {
        const r = await this.api("GET", "/api/v1/agents");
        if (r.status === 200) return;
      } catch { /* not up yet */ }
      if (this.proc.child.exitCode !== null) throw new Error(`server exited early; see ${this.proc.logFile}`);
      if (Date.now() - t0 > 90_000) throw new Error(`server not up after 90 s; see ${this.proc.logFile}`);
      await sleep(250);
    }
  }

  async stop(signal?: NodeJS.Signals) {
    await this.proc?.stop(signal);
  }

  async api(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Api> {
    const r = await fetch(this.base + path, {
      method,
      headers: { authorization: `Bearer ${this.adminToken}`, ...(body === undefined ? {} : { "content-type": "application/json" }), ...headers },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await r.text();
    let json: any;
    try { json = JSON.parse(text); } catch { json = undefined; }
    return { status: r.status, json, text };
  }

  // Registers an agent through the real CLI; returns its home directory.
  async registerAgent(name: string, serverUrl = this.base, extraArgs: string[] = []): Promise<string> {
    const tok = await this.api("POST", "/api/v1/registration-tokens", {});
    if (tok.status !== 201) throw new Error(`registration token: ${tok.status} ${tok.text}`);
    const home = join(this.work, "agents", name);
    mkdirSync(home, { recursive: true });
    const p = startProc(process.execPath, [agentBin, "register", "--server", serverUrl, "--token", tok.json.token, "--name", name, "--home", home, ...extraArgs],
      { logFile: join(this.work, `agent-${name}.log`) });
    const code = await p.exited;
    if (code !== 0) throw new Error(`outpost-agent register exited ${code}; see ${p.logFile}`);
    return home;
  }

  startAgent(name: string, home: string, extraArgs: string[] = []): Proc {
    return startProc(process.execPath, [agentBin, "run", "--home", home, ...extraArgs], { logFile: join(this.work, `agent-${name}.log`) });
  }

  async waitAgentOnline(name: string, ms = 60_000) {
    return waitFor(async () => {
      const r = await this.api("GET", "/api/v1/agents");
      return r.json?.agents?.find((a: any) => a.name === name && a.status === "online");
    }, ms, `agent ${name} online`);
  }

  async waitDeployment(id: string, ms = 60_000) {
    return waitFor(async () => {
      const r = await this.api("GET", `/api/v1/deployments/${id}`);
      return r.status === 200 && ["succeeded", "failed", "canceled"].includes(r.json.status) ? r.json : null;
    }, ms, `deployment ${id} to end`);
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitFor<T>(fn: () => Promise<T | null | undefined | false>, ms: number, what: string): Promise<T> {
  const t0 = Date.now();
  let last: unknown;
  while (Date.now() - t0 < ms) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    await sleep(100);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
}
