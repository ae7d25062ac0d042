// docs/protocol.md §Resync, both directions, with real processes:
// - agent → server: reports the server applied but whose acknowledgement was
//   lost are named in hello, listed back in welcome.applied, and dropped from
//   the outbox without being posted again;
// - server → agent: a server restored from an older copy of its state expects a
//   step's final result the agent already delivered and deleted; the agent
//   rebuilds it from the journal (same id) and the step is not run again.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import http from "node:http";
import net, { type AddressInfo, type Socket } from "node:net";
import { cpSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { createClient } from "@libsql/client";
import { TestServer, waitFor, type Proc } from "../support/local-server.ts";

const server = new TestServer();
const agents: Proc[] = [];
let proxy: http.Server;
let proxyBase = "";
let eatReportAcks = false; // forward POST /agent/v1/reports, then cut the connection before the answer
const tunnels = new Set<Socket>();

beforeAll(async () => {
  await server.start();
  proxy = http.createServer((req, res) => {
    const eat = eatReportAcks && req.url?.startsWith("/agent/v1/reports");
    const up = http.request({ host: "127.0.0.1", port: server.port, path: req.url, method: req.method, headers: req.headers }, (upRes) => {
      if (eat) return void (upRes.resume(), req.socket.destroy());
      res.writeHead(upRes.statusCode!, upRes.headers);
      upRes.pipe(res);
    });
    up.on("error", () => req.socket.destroy());
    req.pipe(up);
  });
  // WebSockets pass through as raw tunnels, which the test can cut to force a reconnect.
  proxy.on("upgrade", (req, socket: Socket, head) => {
    const upstream = net.connect(server.port, "127.0.0.1", () => {
      upstream.write(`${req.method} ${req.url} HTTP/1.1\r\n` + Object.entries(req.headers).map(([k, v]) => `${k}: ${v}\r\n`).join("") + "\r\n");
      upstream.write(head);
      socket.pipe(upstream).pipe(socket);
    });
    for (const s of [socket, upstream]) {
      tunnels.add(s);
      s.on("close", () => tunnels.delete(s));
      s.on("error", () => { socket.destroy(); upstream.destroy(); });
    }
  });
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
  proxyBase = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const a of agents) await a.stop();
  for (const s of tunnels) s.destroy();
  proxy?.closeAllConnections();
  await new Promise((r) => proxy?.close(r));
  await server.stop();
});

async function outboxIds(home: string): Promise<string[]> {
  const c = createClient({ url: pathToFileURL(join(home, "journal.db")).href });
  try {
    return (await c.execute("SELECT id FROM outbox ORDER BY ord")).rows.map((r) => String(r.id));
  } finally {
    c.close();
  }
}

async function deploy(agent: string, command: string): Promise<{ dep: string; stepId: string }> {
  const r = await server.api("POST", "/api/v1/deployments", { agents: [agent], steps: [{ name: "s", type: "shell", command }] });
  expect(r.status, r.text).toBe(201);
  return { dep: r.json.id, stepId: r.json.steps?.[0]?.id ?? (await server.api("GET", `/api/v1/deployments/${r.json.id}`)).json.steps[0].id };
}

describe("§Resync", () => {
  it("agent → server: reports applied but never acknowledged are dropped on welcome, not posted again", async () => {
    const home = await server.registerAgent("resync-acks", proxyBase);
    const agent = server.startAgent("resync-acks", home);
    agents.push(agent);
    await server.waitAgentOnline("resync-acks");
    eatReportAcks = true;
    const { dep, stepId } = await deploy("resync-acks", "echo acked-late");
    const done = await server.waitDeployment(dep, 60_000); // the server applied both reports...
    expect(done.status).toBe("succeeded");
    expect(await outboxIds(home)).toEqual([`${stepId}:started`, `${stepId}:finished`]); // ...the agent never heard
    const before = readFileSync(agent.logFile, "utf8").length;
    for (const s of tunnels) s.destroy(); // the channel reconnects: hello names the reports
    await waitFor(async () => (await outboxIds(home)).length === 0, 60_000, "the outbox to be emptied by the resync");
    expect(readFileSync(agent.logFile, "utf8").slice(before)).toMatch(/resync: 2 reports already applied/);
    eatReportAcks = false;
    const again = await deploy("resync-acks", "echo after");
    expect((await server.waitDeployment(again.dep, 60_000)).status).toBe("succeeded");
  });

  it("server → agent: a server restored from an older state gets a delivered result again, rebuilt from the journal; nothing runs twice", async () => {
    const home = await server.registerAgent("resync-expect");
    const agent = server.startAgent("resync-expect", home);
    agents.push(agent);
    await server.waitAgentOnline("resync-expect");
    const go = join(server.work, "go-resync");
    const count = join(server.work, "count-resync");
    const { dep, stepId } = await deploy("resync-expect", `while [ ! -e ${go} ]; do sleep 0.1; done; echo "$OUTPOST_STEP_ID" >> ${count}; echo restored`);
    await waitFor(async () => (await server.api("GET", `/api/v1/deployments/${dep}`)).json?.steps?.[0]?.status === "running", 30_000, "step running");
    await server.stop("SIGKILL");
    const snapshot = join(server.work, "state-snapshot");
    cpSync(server.stateDir, snapshot, { recursive: true }); // the server's state while the step still runs
    await server.start(server.port);
    writeFileSync(go, "");
    expect((await server.waitDeployment(dep, 60_000)).status).toBe("succeeded");
    await waitFor(async () => (await outboxIds(home)).length === 0, 30_000, "the agent's outbox to drain");
    await server.stop("SIGKILL");
    rmSync(server.stateDir, { recursive: true, force: true });
    cpSync(snapshot, server.stateDir, { recursive: true }); // the server forgets the step's result
    const before = readFileSync(agent.logFile, "utf8").length;
    await server.start(server.port);
    const done = await server.waitDeployment(dep, 90_000);
    expect(done.steps[0]).toMatchObject({ status: "succeeded", exitCode: 0 });
    expect(readFileSync(agent.logFile, "utf8").slice(before)).toMatch(new RegExp(`resync: re-sending the final result of 1 step\\(s\\) the server lacks: ${stepId}`));
    expect(readFileSync(count, "utf8")).toBe(`${stepId}\n`); // run once
    // the restored server had lost the output too: uploaded again from offset 0
    expect((await server.api("GET", `/api/v1/deployments/${dep}/steps/${stepId}/log`)).text).toBe("restored\n");
  });
});
