// docs/protocol.md §Logs, agent side: log chunks go over a connection pool of their
// own — direct or through the proxy — so reports and pulls never wait behind them;
// chunk sizes adapt to the link within LIMITS.logChunkBytes, and drop to 256 KiB for
// a server of the previous chunk limit rather than give the log up.
import { afterEach, describe, expect, it } from "vitest";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Command } from "../../schema/agent-api.ts";
import { LIMITS } from "../../schema/limits.ts";
import { createLogger } from "../log.ts";
import { proxyPolicy } from "../proxy.ts";
import { stepPaths } from "../steps/shell-step.ts";
import { startConnectProxy, type ConnectProxy } from "../../test/support/connect-proxy.ts";
import { ApiClient } from "./api-client.ts";
import { Journal } from "./journal.ts";
import { CHUNK_MIN_BYTES, CHUNK_START_BYTES, chunkSizeAfter, LogUploader, PREVIOUS_CHUNK_LIMIT_BYTES } from "./log-uploader.ts";
import { startedReport } from "./reports.ts";

const MiB = 1024 * 1024;

describe("chunkSizeAfter", () => {
  it("starts at 1 MiB, doubles after a quick full chunk up to LIMITS.logChunkBytes (8 MiB)", () => {
    expect(CHUNK_START_BYTES).toBe(MiB);
    expect(LIMITS.logChunkBytes).toBe(8 * MiB);
    let size = CHUNK_START_BYTES;
    const seen = [size];
    for (let i = 0; i < 5; i++) seen.push((size = chunkSizeAfter(size, size, 50, true)));
    expect(seen).toEqual([MiB, 2 * MiB, 4 * MiB, 8 * MiB, 8 * MiB, 8 * MiB]);
  });
  it("keeps the size after a partial chunk (the step's output so far) or an unhurried one", () => {
    expect(chunkSizeAfter(2 * MiB, 1000, 10, true)).toBe(2 * MiB);
    expect(chunkSizeAfter(2 * MiB, 2 * MiB, 3_000, true)).toBe(2 * MiB);
  });
  it("halves after a failed or slow upload, down to 64 KiB", () => {
    expect(chunkSizeAfter(8 * MiB, 8 * MiB, 100, false)).toBe(4 * MiB);
    expect(chunkSizeAfter(8 * MiB, 8 * MiB, 9_000, true)).toBe(4 * MiB);
    expect(chunkSizeAfter(CHUNK_MIN_BYTES, CHUNK_MIN_BYTES, 20_000, true)).toBe(CHUNK_MIN_BYTES);
  });
  it("respects a lower ceiling (a server with the previous chunk limit)", () => {
    expect(chunkSizeAfter(256 * 1024, 256 * 1024, 10, true, 256 * 1024)).toBe(256 * 1024);
  });
});

type Seen = { method: string; url: string; port: number; bytes: number };
const servers: http.Server[] = [];
let connectProxy: ConnectProxy | null = null;

afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  await connectProxy?.close();
  connectProxy = null;
});

// A server whose log PUTs are held until `release()`; everything else answers at once.
async function stallingServer() {
  const seen: Seen[] = [];
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const server = http.createServer((req, res) => {
    let bytes = 0;
    req.on("data", (c: Buffer) => (bytes += c.length));
    req.on("end", async () => {
      seen.push({ method: req.method!, url: req.url!, port: req.socket.remotePort!, bytes });
      if (req.method === "PUT") {
        await released;
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ length: bytes }));
      } else if (req.url!.startsWith("/agent/v1/reports")) {
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ acked: ["s1:started"] }));
      } else {
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ commands: [], head: 0, acked: 0 }));
      }
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, release };
}

async function reportsAndPullsPassAStalledChunk(api: ApiClient, srv: Awaited<ReturnType<typeof stallingServer>>) {
  const chunk = new Uint8Array(4 * MiB).fill(7);
  const upload = api.putLog("s1", 0, chunk);
  // The chunk is on its way and held by the server: reports and pulls still go through.
  for (let i = 0; i < 20 && !srv.seen.some((s) => s.method === "PUT"); i++) await new Promise((r) => setTimeout(r, 25));
  expect(await api.postReports([startedReport("s1", "d1", Date.now())])).toEqual(["s1:started"]);
  expect(await api.pull(0, 0)).toMatchObject({ head: 0 });
  srv.release();
  expect(await upload).toEqual({ status: 200, body: { length: 4 * MiB } });
  // The next chunk takes the bulk pool's kept-alive connection again.
  expect(await api.putLog("s1", 4 * MiB, new Uint8Array(10))).toEqual({ status: 200, body: { length: 10 } });
  const puts = srv.seen.filter((s) => s.method === "PUT");
  const control = srv.seen.filter((s) => s.method !== "PUT");
  expect(puts.map((p) => p.bytes)).toEqual([4 * MiB, 10]);
  return { putPorts: new Set(puts.map((p) => p.port)), controlPorts: new Set(control.map((p) => p.port)) };
}

describe("§Logs: log chunks on their own connections", () => {
  it("direct: a chunk held by the server holds up no report or pull; chunks and control requests never share a connection", async () => {
    const srv = await stallingServer();
    const { putPorts, controlPorts } = await reportsAndPullsPassAStalledChunk(new ApiClient(srv.base, "cred", { proxy: proxyPolicy(null, {}) }), srv);
    expect(putPorts.size).toBe(1); // kept alive
    for (const p of putPorts) expect(controlPorts.has(p)).toBe(false);
  });

  it("through a proxy: chunks go through it too, in tunnels of their own", async () => {
    const srv = await stallingServer();
    connectProxy = await startConnectProxy();
    const api = new ApiClient(srv.base, "cred", { proxy: proxyPolicy(connectProxy.url, {}) });
    const { putPorts, controlPorts } = await reportsAndPullsPassAStalledChunk(api, srv);
    // Every connection the server saw came through the proxy.
    for (const p of [...putPorts, ...controlPorts]) expect(connectProxy.upstreamPorts.has(p)).toBe(true);
    expect(putPorts.size).toBe(1);
    for (const p of putPorts) expect(controlPorts.has(p)).toBe(false);
    expect(connectProxy.plainRequests).toEqual([]);
  });
});

// A server that stores log chunks like the real one (by offset, overlap skipped), with
// a chunk limit; records each chunk's offset and size.
async function chunkServer(limit: number) {
  const chunks: [offset: number, size: number, status: number][] = [];
  let held = 0;
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on("data", (c: Buffer) => parts.push(c));
    req.on("end", () => {
      const body = Buffer.concat(parts);
      const offset = Number(new URL(req.url!, "http://x").searchParams.get("offset"));
      const answer = (status: number, b: unknown) => {
        chunks.push([offset, body.length, status]);
        res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(b));
      };
      if (body.length > limit) return answer(413, { error: `log chunk is larger than ${limit} bytes` });
      if (offset > held) return answer(409, { error: "gap", length: held });
      held = Math.max(held, offset + body.length);
      answer(200, { length: held });
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, chunks, held: () => held };
}

async function uploadEndedStep(base: string, size: number) {
  const dir = mkdtempSync(join(tmpdir(), "outpost-chunks-"));
  const journal = await Journal.open(join(dir, "journal.db"));
  try {
    const deploy: Command = {
      seq: 1, type: "deploy", id: "cmd-1", deploymentId: "dep-1", agentLostAfterSeconds: 900,
      steps: [{ stepId: "s0", position: 0, name: "s0", type: "shell", command: "true", timeoutSeconds: null, retry: "never" }],
    };
    await journal.storeCommands([{ kind: "valid", command: deploy }]);
    await journal.startStep("s0", "dep-1", 1);
    const paths = stepPaths(join(dir, "steps"), "s0");
    mkdirSync(paths.dir, { recursive: true });
    writeFileSync(paths.log, Buffer.alloc(size, "z"));
    await journal.finishStep("s0", "dep-1", { status: "succeeded", exitCode: 0, reason: null }, size, 2);
    let delivered!: () => void;
    const done = new Promise<void>((r) => (delivered = r));
    const uploader = new LogUploader({ journal, api: new ApiClient(base, "cred", { proxy: proxyPolicy(null, {}) }), stepsDir: join(dir, "steps"), log: createLogger("test"), onDelivered: () => delivered() });
    uploader.watch("s0");
    await done;
    uploader.stop();
    return await journal.step("s0");
  } finally {
    await journal.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("§Logs: the uploader's chunks", () => {
  it("grow from 1 MiB to 8 MiB on a fast server, each starting where the last ended", async () => {
    const srv = await chunkServer(LIMITS.logChunkBytes);
    const size = 20 * MiB + 5;
    const row = await uploadEndedStep(srv.base, size);
    expect(row).toMatchObject({ logUploaded: size, logGivenUp: null });
    expect(srv.chunks.map(([, n]) => n)).toEqual([MiB, 2 * MiB, 4 * MiB, 8 * MiB, 5 * MiB + 5]);
    let at = 0;
    for (const [offset, n, status] of srv.chunks) {
      expect([offset, status]).toEqual([at, 200]);
      at += n;
    }
  });

  it("go on in 256 KiB chunks with a server of the previous chunk limit, instead of giving the log up", async () => {
    const srv = await chunkServer(PREVIOUS_CHUNK_LIMIT_BYTES);
    const size = 700_000;
    const row = await uploadEndedStep(srv.base, size);
    expect(row).toMatchObject({ logUploaded: size, logGivenUp: null });
    expect(srv.held()).toBe(size);
    expect(srv.chunks[0]).toEqual([0, size, 413]);
    expect(srv.chunks.slice(1).map(([offset, n, status]) => [offset, n, status])).toEqual([
      [0, PREVIOUS_CHUNK_LIMIT_BYTES, 200],
      [PREVIOUS_CHUNK_LIMIT_BYTES, PREVIOUS_CHUNK_LIMIT_BYTES, 200],
      [2 * PREVIOUS_CHUNK_LIMIT_BYTES, size - 2 * PREVIOUS_CHUNK_LIMIT_BYTES, 200],
    ]);
  });
});
