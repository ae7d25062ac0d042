// Commands per second through one agent's ledger (issue 10, goal 5): a batch of
// one-step commands stored in the agent's Durable Object in one call (test hook), the
// agent told over its WebSocket, pulled 100 at a time over HTTP, and both reports of each
// step posted in batches of 100 (several batches in flight) until all are acknowledged.
// The agent is played in this process (no steps run): what is measured is the server's
// side of the protocol. `node bench/ledger-throughput.ts` prints it.
import { rmSync } from "node:fs";
import WebSocket from "ws";
import { reportIds, type Command, type Report } from "../schema/agent-api.ts";
import { LIMITS } from "../schema/limits.ts";
import { TestServer } from "../test/support/local-server.ts";

export type ThroughputFigures = { commands: number; ms: number; perSecond: number; pulls: number; reportBatches: number; pullMs: number; reportBatchMs: number };

const REPORTS_IN_FLIGHT = 4;

export async function measureLedgerThroughput(server: TestServer, commands: number): Promise<ThroughputFigures> {
  const token = (await server.api("POST", "/api/v1/registration-tokens", {})).json.token as string;
  const name = `throughput-${Date.now()}`;
  const reg = await fetch(`${server.base}/agent/v1/register`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token, name, version: "bench" }) });
  if (reg.status !== 201) throw new Error(`register: ${reg.status} ${await reg.text()}`);
  const { agentId, credential } = (await reg.json()) as { agentId: string; credential: string };
  const call = async (method: string, path: string, body?: unknown) => {
    const r = await fetch(`${server.base}${path}`, { method, headers: { authorization: `Bearer ${credential}`, ...(body ? { "content-type": "application/json" } : {}) }, body: body ? JSON.stringify(body) : undefined });
    const text = await r.text();
    if (r.status !== 200) throw new Error(`${method} ${path}: ${r.status} ${text}`);
    return JSON.parse(text);
  };

  const ws = new WebSocket(`${server.base.replace("http", "ws")}/agent/v1/channel`, { headers: { authorization: `Bearer ${credential}` } });
  const notified: ((head: number) => void)[] = [];
  let head = 0;
  ws.on("message", (data) => {
    const m = JSON.parse(String(data)) as { type: string; head: number };
    if (m.type === "commands" || m.type === "welcome") head = Math.max(head, m.head);
    for (const n of notified.splice(0)) n(head);
  });
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  ws.send(JSON.stringify({ type: "hello", version: "bench", lastSeq: 0, running: [], reports: [], pendingReports: 0 }));
  await new Promise<void>((r) => notified.push(() => r())); // welcome

  const t0 = performance.now();
  const stored = await server.api("POST", `/api/v1/test-hooks/agents/${agentId}/commands`, { count: commands });
  if (stored.status !== 200) throw new Error(`test hook: ${stored.status} ${stored.text} (is OUTPOST_TEST_HOOKS=1 set?)`);
  if (head < stored.json.head) await new Promise<void>((r) => notified.push(() => r())); // the notification

  let lastSeq = 0;
  let pulls = 0;
  let batches = 0;
  let pullMs = 0;
  let reportMs = 0;
  const queue: Report[] = [];
  const inFlight = new Set<Promise<void>>();
  const post = (reports: Report[]) => {
    const t = performance.now();
    const p = call("POST", "/agent/v1/reports", { reports, sentAt: Date.now() }).then((r: { acked: string[] }) => {
      if (r.acked.length !== reports.length) throw new Error(`${reports.length} reports posted, ${r.acked.length} acknowledged`);
      batches++;
      reportMs += performance.now() - t;
    });
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
    return p;
  };
  while (lastSeq < stored.json.head || queue.length > 0) {
    if (lastSeq < stored.json.head) {
      const t = performance.now();
      const page = (await call("GET", `/agent/v1/commands?after=${lastSeq}`)) as { commands: Command[] };
      pullMs += performance.now() - t;
      pulls++;
      for (const c of page.commands) {
        lastSeq = c.seq;
        if (c.type !== "deploy") continue;
        const at = Date.now();
        for (const s of c.steps) {
          queue.push({ type: "step-started", id: reportIds.started(s.stepId), deploymentId: c.deploymentId, stepId: s.stepId, at });
          queue.push({ type: "step-finished", id: reportIds.finished(s.stepId), deploymentId: c.deploymentId, stepId: s.stepId, status: "succeeded", exitCode: 0, reason: null, at });
        }
      }
    }
    while (queue.length >= LIMITS.reportsPerBatch || (queue.length > 0 && lastSeq >= stored.json.head)) {
      if (inFlight.size >= REPORTS_IN_FLIGHT) await Promise.race(inFlight);
      void post(queue.splice(0, LIMITS.reportsPerBatch));
    }
  }
  await Promise.all(inFlight);
  await call("GET", `/agent/v1/commands?after=${lastSeq}`); // acknowledges the last page
  const ms = performance.now() - t0;
  ws.close();
  return { commands, ms, perSecond: (commands * 1000) / ms, pulls: pulls + 1, reportBatches: batches, pullMs: pullMs / pulls, reportBatchMs: reportMs / batches };
}

export function throughputLine(f: ThroughputFigures): string {
  return `${f.commands} commands through one agent's ledger in ${(f.ms / 1000).toFixed(2)} s: ${Math.round(f.perSecond)} commands/s (goal ≥ 5000: ${f.perSecond >= 5000 ? "met" : "MISSED"}); ${f.pulls} pulls (${f.pullMs.toFixed(1)} ms each), ${f.reportBatches} report batches of ≤ ${LIMITS.reportsPerBatch} (${f.reportBatchMs.toFixed(1)} ms each, ${REPORTS_IN_FLIGHT} in flight)`;
}

if (import.meta.main) {
  const server = new TestServer();
  process.env.OUTPOST_TEST_HOOKS = "1";
  await server.start();
  try {
    await measureLedgerThroughput(server, 500); // warm-up
    console.log(throughputLine(await measureLedgerThroughput(server, Number(process.env.BENCH_COMMANDS ?? 10_000))));
  } finally {
    await server.stop();
    rmSync(server.work, { recursive: true, force: true });
  }
}
