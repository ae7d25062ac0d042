// After the heal: wait until the system has settled, then collect what the checks read —
// final deployment views and step logs, channel status (the server's ledgers), the
// agents' journals, the executions counted by the steps, and the deployments in D1.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { sleep } from "../support/local-server.ts";
import type { AgentState } from "./agent-fleet.ts";
import type { ApiClient, Http } from "./api-client.ts";
import type { Submission } from "./submissions.ts";

export type JournalState = { outbox: number; commands: { seq: number; id: string; state: string }[]; lastSeq: number; runningSteps: string[] };
export type D1Deployments = { source: string; byName: Map<string, number> } | { error: string };

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

export function channelSynced(ch: any): boolean {
  return !!ch && ch.acked === ch.head && ch.openCommands === 0 && ch.pendingProjections === 0;
}

// Settled: every deployment ended and every channel synced with its agent.
export async function settle(
  opts: { api: ApiClient; submissions: readonly Submission[]; agents: readonly AgentState[]; settleSeconds: number; log: (msg: string) => void },
  healedAt: number,
): Promise<{ settledAt: number | null; views: Map<string, any>; channels: Map<string, Http> }> {
  const { api, submissions, agents, log } = opts;
  const views = new Map<string, any>();
  const channels = new Map<string, Http>();
  const ids = submissions.flatMap((s) => (s.id ? [s.id] : [])).concat(submissions.flatMap((s) => (s.replayed?.id && s.replayed.id !== s.id ? [s.replayed.id] : [])));
  const deadline = healedAt + opts.settleSeconds * 1000;
  let lastNote = 0;
  for (;;) {
    const open = ids.filter((id) => !TERMINAL.has(views.get(id)?.status));
    await pool(open, 8, async (id) => {
      const r = await api.get(`/api/v1/deployments/${id}`, 10_000).catch(() => null);
      if (r?.status === 200) views.set(id, r.json);
    });
    for (const a of agents) {
      const r = await api.get(`/api/v1/agents/${a.id}`, 10_000).catch((e) => ({ status: 0, json: undefined, text: String(e) }));
      channels.set(a.name, r);
    }
    const stillOpen = ids.filter((id) => !TERMINAL.has(views.get(id)?.status));
    const channelOk = [...channels.values()].every((r) => r.status !== 200 || !r.json?.channel || channelSynced(r.json.channel));
    if (stillOpen.length === 0 && channelOk) return { settledAt: Date.now(), views, channels };
    if (Date.now() > deadline) return { settledAt: null, views, channels };
    if (Date.now() - lastNote > 10_000) {
      lastNote = Date.now();
      log(`settling: ${stillOpen.length} deployment(s) not ended; channels ${[...channels.entries()].map(([n, r]) => `${n}=${r.status === 200 ? JSON.stringify(r.json?.channel) : r.status}`).join(" ")}`);
    }
    await sleep(1_000);
  }
}

export async function readLogs(api: ApiClient, views: Map<string, any>): Promise<Map<string, string | null>> {
  const logs = new Map<string, string | null>();
  const steps = [...views.values()].flatMap((v) => (v.steps ?? []).map((s: any) => ({ dep: v.id, id: s.id })));
  await pool(steps, 8, async (s) => {
    const r = await api.get(`/api/v1/deployments/${s.dep}/steps/${s.id}/log`, 10_000).catch(() => null);
    logs.set(s.id, r?.status === 200 ? r.text : null);
  });
  return logs;
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
  for (const f of readdirSync(execDir)) {
    for (const line of readFileSync(join(execDir, f), "utf8").split("\n")) {
      const id = line.trim();
      if (id) counts.set(id, (counts.get(id) ?? 0) + 1);
    }
  }
  return counts;
}

// Deployments in D1 by name, read from the local D1 file once the server is stopped.
export async function countD1Deployments(stateDir: string, runId: string): Promise<D1Deployments> {
  const dir = join(stateDir, "wrangler", "v3", "d1");
  const files = existsSync(dir) ? findFiles(dir, (f) => f.endsWith(".sqlite")) : [];
  const { createClient } = await import("@libsql/client");
  for (const file of files) {
    const c = createClient({ url: "file:" + file });
    try {
      await c.execute("PRAGMA query_only = ON");
      const rs = await c.execute({ sql: "SELECT name, COUNT(*) AS n FROM deployments WHERE name LIKE ? GROUP BY name", args: [`chaos-${runId}-%`] });
      return { source: file, byName: new Map(rs.rows.map((r) => [String(r.name), Number(r.n)])) };
    } catch {
      /* not the D1 database */
    } finally {
      c.close();
    }
  }
  return { error: `no D1 database with a deployments table under ${dir}` };
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
