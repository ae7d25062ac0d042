// docs/protocol.md §Reconnect: after a server restart, agents come back spread
// out (full-jitter back-off), not as a herd. Measured from the agents' own log
// lines: the channel logs every connect attempt and "channel up", each with an
// ISO timestamp.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { sleep, TestServer, waitFor, type Proc } from "../support/local-server.ts";

const server = new TestServer();
const N = 4;
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

// Timestamps (ms) of the log lines of one agent that match `re`, at or after `since`.
function times(agent: Proc, re: RegExp, since: number): number[] {
  return readFileSync(agent.logFile, "utf8")
    .split("\n")
    .filter((l) => re.test(l))
    .map((l) => Date.parse(l.slice(0, 24)))
    .filter((t) => t >= since);
}

describe("§Reconnect", () => {
  it(`${N} agents reconnecting after a server restart come back spread out`, async () => {
    await server.stop("SIGKILL");
    const down = Date.now();
    await sleep(3_000); // a few failed attempts each, so their back-off has grown apart
    await server.start(server.port);
    const up = await waitFor(async () => {
      const firsts = agents.map((a) => times(a, /channel up/, down)[0]);
      return firsts.every((t) => t !== undefined) ? firsts : null;
    }, 60_000, "every agent's channel up again");
    const attempts = agents.map((a) => times(a, /channel connecting/, down).length);
    const spread = Math.max(...up) - Math.min(...up);
    const offsets = up.map((t) => t - Math.min(...up)).sort((a, b) => a - b);
    console.log(`§Reconnect: ${N} agents back within ${spread} ms of each other (offsets ${offsets.join(", ")} ms; connect attempts during the outage: ${attempts.join(", ")})`);
    // Not a herd: a server that holds early connections while it boots may let two
    // land together, so only the whole group's spread is asserted.
    expect(spread).toBeGreaterThan(100);
    for (const name of names) await server.waitAgentOnline(name);
  });
});
