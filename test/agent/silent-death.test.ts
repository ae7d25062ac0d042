// docs/protocol.md §Presence, with real processes: an agent whose machine goes silent
// (no FIN, no RST: its processes stopped with SIGSTOP, their sockets left open) is shown
// offline within the server's threshold of its last ping — the presence sweep is due
// when the freshest socket would turn silent — and a live agent pings as often as the
// server asks in its welcome (a third of the threshold), so it never flaps offline.
import { describe, expect, it, afterAll, beforeAll } from "vitest";
import { join } from "node:path";
import { TestServer, waitFor, type Proc } from "../support/local-server.ts";
import { readPid } from "../support/pids.ts";

const OFFLINE_AFTER_MS = 3000;
const server = new TestServer();
const NAME = "silent";
let home: string;
let agent: Proc;
let stopped: number[] = [];

const status = async () => ((await server.api("GET", `/api/v1/agents/${NAME}`)).json as { status: string }).status;

beforeAll(async () => {
  process.env.OUTPOST_OFFLINE_AFTER_MS = String(OFFLINE_AFTER_MS); // the server's launcher passes it on
  await server.start();
  delete process.env.OUTPOST_OFFLINE_AFTER_MS;
  home = await server.registerAgent(NAME);
  agent = server.startAgent(NAME, home);
  await server.waitAgentOnline(NAME);
});

afterAll(async () => {
  for (const pid of stopped) try { process.kill(pid, "SIGCONT"); } catch { /* gone */ }
  await agent?.stop();
  await server.stop();
});

describe("silent death", () => {
  it("a live agent pings as the server asks and stays online past several thresholds", async () => {
    const t0 = Date.now();
    while (Date.now() - t0 < 3 * OFFLINE_AFTER_MS) {
      expect(await status()).toBe("online");
      await new Promise((r) => setTimeout(r, 250));
    }
  });

  it("a stalled agent is shown offline within the threshold (plus slack)", async () => {
    const worker = readPid(join(home, "worker.pid"))!;
    stopped = [agent.pid, worker];
    for (const pid of stopped) process.kill(pid, "SIGSTOP");
    const t0 = Date.now();
    await waitFor(async () => (await status()) === "offline", 15_000, "the stalled agent shown offline");
    const took = Date.now() - t0;
    expect(took).toBeLessThanOrEqual(OFFLINE_AFTER_MS + 2000);
  });
});
