// After the heal: wait until the system has settled, then collect what the checks read —
// final deployment views and step logs, channel status (the server's ledgers), the
// agents' journals, the executions counted by the steps, and the deployments in D1.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { sleep } from "../support/local-server.ts";
import type { AgentState } from "./agent-fleet.ts";
import type { ApiClient, Http } from "./api-client.ts";
import type { ResultObserver, StepResult } from "./observer.ts";
import { AGENT_LOST_REASON } from "./plan.ts";
import type { Submission } from "./submissions.ts";

export type JournalState = { outbox: number; commands: { seq: number; id: string; state: string }[]; lastSeq: number; runningSteps: string[] };

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

export function channelSynced(ch: any): boolean {
  return !!ch && ch.acked === ch.head && ch.openCommands === 0 && ch.pendingProjections === 0;
}

// Settled: every deployment ended — with no step still waiting for a late result (failed
// as exactly "agent-lost": its agent is back, so its real result must come) — and every
// channel synced with its agent.
const awaitsLateResult = (v: any) => (v?.steps ?? []).some((s: any) => s.status === "failed" && s.reason === AGENT_LOST_REASON);
const settled = (v: any) => TERMINAL.has(v?.status) && !awaitsLateResult(v);

export async function settle(
  opts: { api: ApiClient; submissions: readonly Submission[]; agents: readonly AgentState[]; settleSeconds: number; log: (msg: string) => void; observer?: ResultObserver },
  healedAt: number,
): Promise<{ settledAt: number | null; views: Map<string, any>; channels: Map<string, Http> }> {
  const { api, submissions, agents, log, observer } = opts;
  const views = new Map<string, any>();
  const channels = new Map<string, Http>();
  const ids = submissions.flatMap((s) => (s.id ? [s.id] : [])).concat(submissions.flatMap((s) => (s.replayed?.id && s.replayed.id !== s.id ? [s.replayed.id] : [])));
  const deadline = healedAt + opts.settleSeconds * 1000;
  let lastNote = 0;
  for (;;) {
    const open = ids.filter((id) => !settled(views.get(id)));
    await pool(open, 8, async (id) => {
      const r = await api.get(`/api/v1/deployments/${id}`, 10_000).catch(() => null);
      if (r?.status === 200) {
        views.set(id, r.json);
        observer?.recordView(r.json, "settle");
      }
    });
    for (const a of agents) {
      const r = await api.get(`/api/v1/agents/${a.id}`, 10_000).catch((e) => ({ status: 0, json: undefined, text: String(e) }));
      channels.set(a.name, r);
    }
    const stillOpen = ids.filter((id) => !settled(views.get(id)));
    const channelOk = [...channels.values()].every((r) => r.status !== 200 || !r.json?.channel || channelSynced(r.json.channel));
    if (stillOpen.length === 0 && channelOk) return { settledAt: Date.now(), views, channels };
    if (Date.now() > deadline) return { settledAt: null, views, channels };
    if (Date.now() - lastNote > 10_000) {
      lastNote = Date.now();
      log(`settling: ${stillOpen.length} deployment(s) not ended (or awaiting a late result); channels ${[...channels.entries()].map(([n, r]) => `${n}=${r.status === 200 ? JSON.stringify(r.json?.channel) : r.status}`).join(" ")}`);
    }
    await sleep(1_000);
  }
}

export type LogRead = { bytes: Buffer; size: number; complete: boolean; ranges: number } | { error: string };

// Every step's whole log, read by ranges of `rangeBytes` following X-Log-Size (as a
// reader of a running step would), as raw bytes.
export async function readLogs(api: ApiClient, views: Map<string, any>, rangeBytes: number): Promise<Map<string, LogRead>> {
  const logs = new Map<string, LogRead>();
  const steps = [...views.values()].flatMap((v) => (v.steps ?? []).map((s: any) => ({ dep: v.id, id: s.id })));
  await pool(steps, 6, async (s) => {
    logs.set(s.id, await readLog(api, s.dep, s.id, rangeBytes).catch((e) => ({ error: String(e?.message ?? e) })));
  });
  return logs;
}

export async function readLog(api: ApiClient, deploymentId: string, stepId: string, rangeBytes: number): Promise<LogRead> {
  const parts: Buffer[] = [];
  let offset = 0;
  let ranges = 0;
  for (;;) {
    const r = await api.getBytes(`/api/v1/deployments/${deploymentId}/steps/${stepId}/log?offset=${offset}&limit=${rangeBytes}`, 20_000);
    ranges++;
    if (r.status !== 200) return { error: `range at ${offset} answered ${r.status} ${r.bytes.toString("utf8").slice(0, 160)}` };
    const size = Number(r.headers.get("x-log-size"));
    const complete = r.headers.get("x-log-complete") === "true";
    if (!Number.isInteger(size) || size < 0) return { error: `range at ${offset}: X-Log-Size ${JSON.stringify(r.headers.get("x-log-size"))}` };
    if (r.bytes.length > rangeBytes) return { error: `range at ${offset}: ${r.bytes.length} bytes for limit ${rangeBytes}` };
    parts.push(r.bytes);
    offset += r.bytes.length;
    if (offset > size) return { error: `range at ${offset - r.bytes.length}: read up to ${offset}, beyond X-Log-Size ${size}` };
    if (offset === size) return { bytes: Buffer.concat(parts), size, complete, ranges };
    if (r.bytes.length === 0) return { error: `range at ${offset}: empty, but X-Log-Size says ${size}` };
    if (ranges > 1000) return { error: "more than 1000 ranges" };
  }
}

// Call once the agents are stopped: a journal is read as the agent left it.
export async function readJournals(agents: readonly AgentState[]): Promise<Map<string, JournalState | { error: string }>> {
  const journals = new Map<string, JournalState | { error: string }>();
  for (const a of agents) journals.set(a.name, await readJournal(join(a.home, "journal.db")).catch((e) => ({ error: String(e?.message ?? e) })));
  return journals;
}

export async function readJournal(path: string): Promise<JournalState> {
  const { createClient } = await import("@libsql/client");
  const c = createClient({ url: "file:" + path });
  try {
    await c.execute("PRAGMA query_only = ON"); // read-only: this is the agent's store
    const outbox = Number((await c.execute("SELECT COUNT(*) AS n FROM outbox")).rows[0].n);
    const commands = (await c.execute("SELECT seq, id, state FROM commands ORDER BY seq")).rows.map((r) => ({ seq: Number(r.seq), id: String(r.id), state: String(r.state) }));
    const meta = (await c.execute("SELECT value FROM meta WHERE key = 'lastSeq'")).rows[0];
    const running = (await c.execute("SELECT step_id FROM steps WHERE state IN ('pending', 'running')")).rows.map((r) => String(r.step_id));
    return { outbox, commands, lastSeq: meta ? Number(meta.value) : 0, runningSteps: running };
  } finally {
    c.close();
  }
}

// step id → times it ran, from the count files the steps append to.
export function readExecutions(execDir: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const f of readdirSync(execDir).filter((f) => f.startsWith("executions-"))) {
    for (const line of readFileSync(join(execDir, f), "utf8").split("\n")) {
      const id = line.trim();
      if (id) counts.set(id, (counts.get(id) ?? 0) + 1);
    }
  }
  return counts;
}

// What D1 holds about this run's deployments, read from the local D1 file once the server
// is stopped: how many deployments of each name (Idempotency-Key), and each deployment's
// and step's result as stored (epoch ms), compared with what was seen during the run.
export type D1Step = StepResult & { deploymentId: string; agent: string; name: string };
export type D1State = {
  source: string;
  byName: Map<string, number>;
  deployments: Map<string, D1Deployment>;
  steps: Map<string, D1Step>;
};
export type D1Deployment = { name: string; status: string; finishedAt: number | null; updatedAt: number };
export type D1Deployments = D1State | { error: string };

export async function readD1(stateDir: string, runId: string): Promise<D1Deployments> {
  const dir = join(stateDir, "wrangler", "v3", "d1");
  const files = existsSync(dir) ? findFiles(dir, (f) => f.endsWith(".sqlite")) : [];
  for (const file of files) {
    const got = await readD1File(file, runId).catch(() => null); // not the D1 database
    if (got) return got;
  }
  return { error: `no D1 database with a deployments table under ${dir}` };
}

export async function readD1File(file: string, runId: string): Promise<D1State> {
  const { createClient } = await import("@libsql/client");
  const c = createClient({ url: "file:" + file });
  try {
    await c.execute("PRAGMA query_only = ON"); // read-only: this is the server's store
    const like = `chaos-${runId}-%`;
    const deps = await c.execute({ sql: "SELECT id, name, status, finished_at, updated_at FROM deployments WHERE name LIKE ?", args: [like] });
    const steps = await c.execute({
      sql: `SELECT s.id, s.deployment_id, a.name AS agent, s.name, s.status, s.exit_code, s.reason, s.finished_at, s.reported_at
              FROM deployment_steps s JOIN deployments d ON d.id = s.deployment_id JOIN agents a ON a.id = s.agent_id
             WHERE d.name LIKE ?`,
      args: [like],
    });
    const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));
    const byName = new Map<string, number>();
    const deployments = new Map<string, D1Deployment>();
    for (const r of deps.rows) {
      byName.set(String(r.name), (byName.get(String(r.name)) ?? 0) + 1);
      deployments.set(String(r.id), { name: String(r.name), status: String(r.status), finishedAt: num(r.finished_at), updatedAt: Number(r.updated_at) });
    }
    const stepMap = new Map<string, D1Step>();
    for (const r of steps.rows) {
      stepMap.set(String(r.id), {
        deploymentId: String(r.deployment_id), agent: String(r.agent), name: String(r.name),
        status: String(r.status), exitCode: num(r.exit_code), reason: r.reason === null ? null : String(r.reason),
        finishedAt: num(r.finished_at), reportedAt: num(r.reported_at),
      });
    }
    return { source: file, byName, deployments, steps: stepMap };
  } finally {
    c.close();
  }
}

function findFiles(dir: string, pred: (f: string) => boolean): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...findFiles(p, pred));
    else if (pred(e.name)) out.push(p);
  }
  return out;
}

async function pool<T>(items: T[], n: number, fn: (t: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (i < items.length) await fn(items[i++]);
  }));
}
