// docs/protocol.md §Reconnect: agents cut off together come back spread out, because
// each waits a delay drawn uniformly below a cap (full jitter) that grows with the
// outage: half of how long the channel has been down, within 0.5 – 30 s. Measured from
// the agents' own log lines while the server is down: the channel logs every connect
// attempt, numbered, with an ISO timestamp, and a refused attempt fails within
// milliseconds, so the time between two attempts is the delay drawn before the second,
// under the cap of the outage's length at the first. The outage began when the server
// was killed (an agent notices a little later, so its true cap is at most this one).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { TIMING } from "../../schema/limits.ts";
import { TestServer, waitFor, type Proc } from "../support/local-server.ts";

const server = new TestServer();
const N = 4;
const OUTAGE_MS = 12_000;
const SLACK_MS = 250; // the refused attempt itself, and the log line's own latency
const names = Array.from({ length: N }, (_, i) => `herd-${i}`);
const agents: Proc[] = [];

beforeAll(async () => {
  await server.start();
  for (const name of names) agents.push(server.startAgent(name, await server.registerAgent(name)));
  for (const name of names) await server.waitAgentOnline(name);
});

afterAll(async () => {
  for (const a of agents) await a.stop();
  await server.stop();
});

// One agent's connect attempts: [time (ms), attempt number], in order.
function attempts(agent: Proc): [number, number][] {
  return [...readFileSync(agent.logFile, "utf8").matchAll(/^(\S+) outpost-agent\[worker\/channel\] channel connecting \(attempt (\d+)\)$/gm)].map((m) => [Date.parse(m[1]), Number(m[2])]);
}

describe("§Reconnect", () => {
  it(`${N} agents cut off together draw their reconnect delays across the whole window, none beyond the outage's cap`, async () => {
    await server.stop("SIGKILL");
    const down = Date.now();
    // Let the outage run: the server is down, so nothing else can be waited for.
    await waitFor(async () => Date.now() - down >= OUTAGE_MS, OUTAGE_MS + 1_000, "the outage to last");
    const restarting = Date.now();
    await server.start(server.port);
    for (const name of names) await server.waitAgentOnline(name, 90_000);

    // Delays between consecutive attempts made while the server was certainly down,
    // each as a fraction of the cap it was drawn under.
    const samples: { delay: number; cap: number; u: number }[] = [];
    for (const agent of agents) {
      const during = attempts(agent).filter(([t]) => t >= down && t < restarting);
      for (let i = 1; i < during.length; i++) {
        const [[t0, k0], [t1, k1]] = [during[i - 1], during[i]];
        expect(k1).toBe(k0 + 1); // consecutive failures of one outage
        const cap = Math.min(TIMING.reconnectMaxMs, Math.max(TIMING.reconnectMinMs, (t0 - down) / 2));
        samples.push({ delay: t1 - t0, cap, u: (t1 - t0) / cap });
      }
    }
    const us = samples.map((s) => s.u.toFixed(2));
    console.log(`§Reconnect: ${samples.length} reconnect delays of ${N} agents as fractions of their caps: ${us.join(", ")}`);
    expect(samples.length).toBeGreaterThanOrEqual(8);
    for (const s of samples) expect(s.delay, `delay ${s.delay} ms under a ${s.cap} ms cap`).toBeLessThanOrEqual(s.cap + SLACK_MS);
    // Spread over the window: both halves drawn, and far apart — neither all at the cap
    // (no jitter), nor all at once (no delay), nor bunched anywhere in between.
    const u = samples.map((s) => s.u);
    expect(u.some((x) => x < 0.5)).toBe(true);
    expect(u.some((x) => x >= 0.5)).toBe(true);
    expect(Math.max(...u) - Math.min(...u)).toBeGreaterThanOrEqual(0.4);
  });
});
