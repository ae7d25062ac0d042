// docs/protocol.md §Reconnect (and §Commands): work still arrives when a proxy
// breaks WebSockets. The agent long-polls GET /agent/v1/commands?wait=25 through
// a real HTTP proxy that either refuses upgrades (403) or blocks them (accepts
// the connection and never answers), while plain HTTPS requests pass. The proxy
// records every exchange, so the test sees the long-poll held open at the server
// before it creates a deployment, and sees that very request answered with it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxy, type Exchange, type Proxy } from "../support/proxy.ts";
import { TestServer, waitFor, type Proc } from "../support/local-server.ts";

const server = new TestServer();
const proxies: Proxy[] = [];
const agents: Proc[] = [];

beforeAll(async () => {
  await server.start();
});

afterAll(async () => {
  for (const a of agents) await a.stop();
  for (const p of proxies) await p.close();
  await server.stop();
});

const isLongPoll = (x: Exchange) => x.method === "GET" && x.url.startsWith("/agent/v1/commands?") && new URLSearchParams(x.url.split("?")[1]).get("wait") === "25";

describe("§Reconnect: without a WebSocket", () => {
  for (const mode of ["refuse", "block"] as const) {
    it(`receives and runs deployments by long-polling when the proxy ${mode}s WebSockets, and reports back`, async () => {
      const proxy = await startProxy(server.port, { upgrades: mode });
      proxies.push(proxy);
      const name = `lp-${mode}`;
      const home = await server.registerAgent(name, proxy.base);
      agents.push(server.startAgent(name, home));
      for (let i = 0; i < 2; i++) {
        // The agent is waiting: a long-poll is held open at the server, through the proxy.
        const held = await waitFor(async () => proxy.inFlight().find(isLongPoll), 30_000, "a long-poll in flight");
        const created = await server.api("POST", "/api/v1/deployments", { agents: [name], steps: [{ name: "lp", type: "shell", command: "echo via-long-poll" }] });
        expect(created.status).toBe(201);
        const done = await server.waitDeployment(created.json.id, 60_000);
        expect(done.status).toBe("succeeded");
        const log = await server.api("GET", `/api/v1/deployments/${created.json.id}/steps/${done.steps[0].id}/log`);
        expect(log.text).toBe("via-long-poll\n");
        // The long-poll that was waiting is the one that brought the command: it was
        // released when the command was stored, not at the end of its 25 s.
        expect(held.status).toBe(200);
        expect(JSON.parse(held.answer!.toString()).commands.map((c: { deploymentId: string }) => c.deploymentId)).toEqual([created.json.id]);
      }
      expect(proxy.upgrades).toBeGreaterThan(0);
    });
  }
});
