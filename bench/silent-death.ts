// Silent death (issue 10, goal 6; docs/protocol.md §Presence): how long until an agent
// whose machine goes silent — its processes stopped with SIGSTOP, sockets left open, no
// FIN, no RST — is shown offline, and what an idle agent costs its Durable Object
// (alarm wake-ups a minute, read from GET /api/v1/agents/:id channel.alarms), for a
// given OUTPOST_OFFLINE_AFTER_MS. `node bench/silent-death.ts` prints the trade-off.
import { join } from "node:path";
import { rmSync } from "node:fs";
import { TestServer, waitFor } from "../test/support/local-server.ts";
import { readPid } from "../test/support/pids.ts";

export type SilentDeathFigures = { offlineAfterMs: number; idleMs: number; wakeupsPerMinute: number; shownOfflineMs: number };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function measureSilentDeath(opts: { offlineAfterMs: number; idleMs: number }): Promise<SilentDeathFigures> {
  const server = new TestServer();
  const stopped: number[] = [];
  process.env.OUTPOST_OFFLINE_AFTER_MS = String(opts.offlineAfterMs);
  try {
    await server.start();
  } finally {
    delete process.env.OUTPOST_OFFLINE_AFTER_MS;
  }
  const name = "silent";
  const home = await server.registerAgent(name);
  const agent = server.startAgent(name, home);
  try {
    await server.waitAgentOnline(name);
    const alarms = async () => ((await server.api("GET", `/api/v1/agents/${name}`)).json as { channel: { alarms: number } }).channel.alarms;
    await sleep(2000); // past the hello's own writes
    const before = await alarms();
    await sleep(opts.idleMs);
    const wakeups = (await alarms()) - before;

    const worker = readPid(join(home, "worker.pid"));
    for (const pid of [agent.pid, ...(worker ? [worker] : [])]) {
      process.kill(pid, "SIGSTOP");
      stopped.push(pid);
    }
    const t0 = Date.now();
    await waitFor(async () => ((await server.api("GET", `/api/v1/agents/${name}`)).json as { status: string }).status === "offline", 5 * opts.offlineAfterMs + 30_000, "the silent agent shown offline");
    return { offlineAfterMs: opts.offlineAfterMs, idleMs: opts.idleMs, wakeupsPerMinute: (wakeups * 60_000) / opts.idleMs, shownOfflineMs: Date.now() - t0 };
  } finally {
    for (const pid of stopped) process.kill(pid, "SIGCONT");
    await agent.stop();
    await server.stop();
    rmSync(server.work, { recursive: true, force: true });
  }
}

export function silentDeathTable(rows: SilentDeathFigures[]): string {
  const lines = ["OUTPOST_OFFLINE_AFTER_MS   shown offline after silence (goal ≤ 10 s)   DO wake-ups per idle minute (goal ≤ 1)"];
  for (const r of rows) {
    const off = `${(r.shownOfflineMs / 1000).toFixed(1)} s ${r.shownOfflineMs <= 10_000 ? "met" : "MISSED"}`;
    const wake = `${r.wakeupsPerMinute.toFixed(1)} ${r.wakeupsPerMinute <= 1 ? "met" : "MISSED"} (${Math.round(r.idleMs / 1000)} s idle)`;
    lines.push(`${String(r.offlineAfterMs).padEnd(27)}${off.padEnd(45)}${wake}`);
  }
  return lines.join("\n");
}

if (import.meta.main) {
  const idleMs = Number(process.env.BENCH_IDLE_MS ?? 60_000);
  const rows: SilentDeathFigures[] = [];
  for (const offlineAfterMs of [30_000, 60_000, 9_000]) {
    console.log(`silent death with OUTPOST_OFFLINE_AFTER_MS=${offlineAfterMs}…`);
    rows.push(await measureSilentDeath({ offlineAfterMs, idleMs }));
  }
  console.log(`\n${silentDeathTable(rows)}`);
}
