// docs/protocol.md §Reconnect: an HTTP loop's back-off (pulls, report batches, log
// chunks) starts over after any successful request. Each loop runs for real — its
// journal a libSQL file in a temp dir, its requests through the real ApiClient — against
// a small HTTP server that answers from a script; the server records, as each request
// arrives, how many consecutive failures the loop's back-off has counted.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Command } from "../../schema/agent-api.ts";
import { LIMITS } from "../../schema/limits.ts";
import { Backoff } from "../backoff.ts";
import { createLogger } from "../log.ts";
import { stepPaths } from "../steps/shell-step.ts";
import { ApiClient } from "./api-client.ts";
import { CommandPuller } from "./command-puller.ts";
import { Journal } from "./journal.ts";
import { LogUploader } from "./log-uploader.ts";
import { ReportSender } from "./report-sender.ts";

type Answer = { status: number; body: unknown };
const BUSY: Answer = { status: 503, body: { error: "busy" } };

let dir: string;
let journal: Journal;
let server: http.Server;
const log = createLogger("test");

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "outpost-loops-"));
  journal = await Journal.open(join(dir, "journal.db"));
});
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  await journal.close();
  rmSync(dir, { recursive: true, force: true });
});

// Answers the requests to `path` in turn from `script` (then 503 for ever), recording
// backoff.attempt at each arrival. Resolves once the script is used up.
async function scriptedServer(path: string, backoff: () => Backoff | undefined, script: ((body: string) => Answer)[]) {
  const attempts: number[] = [];
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      if (!req.url!.startsWith(path)) return void res.writeHead(404).end();
      const i = attempts.length;
      attempts.push(backoff()?.attempt ?? -1);
      const a = i < script.length ? script[i](Buffer.concat(chunks).toString()) : BUSY;
      res.writeHead(a.status, { "content-type": "application/json" }).end(JSON.stringify(a.body));
      if (i === script.length - 1) done();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const api = new ApiClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, "cred");
  return { api, attempts, finished };
}

const fast = () => new Backoff({ minMs: 5, maxMs: 50 });
const busy = () => BUSY;
const deploy: Command = {
  seq: 1, type: "deploy", id: "cmd-1", deploymentId: "dep-1", agentLostAfterSeconds: 900,
  steps: [{ stepId: "s0", position: 0, name: "s0", type: "shell", command: "true", timeoutSeconds: null, retry: "never" }],
};

describe("§Reconnect: an HTTP loop's back-off starts over after any success", () => {
  it("report sender", async () => {
    const backoff = fast();
    const ackAll = (body: string): Answer => ({ status: 200, body: { acked: JSON.parse(body).reports.map((r: { id: string }) => r.id) } });
    const { api, attempts, finished } = await scriptedServer("/agent/v1/reports", () => backoff, [busy, busy, ackAll, busy, ackAll]);
    await journal.storeCommands([{ kind: "valid", command: deploy }]);
    await journal.startStep("s0", "dep-1", 1);
    const sender = new ReportSender({ journal, api, log, isLogDelivered: async () => true, backoff });
    sender.kick();
    await waitUntil(async () => (await journal.outboxCount()) === 0 && attempts.length === 3);
    await journal.finishStep("s0", "dep-1", { status: "succeeded", exitCode: 0, reason: null }, 0, 2);
    sender.kick();
    await finished;
    sender.stop();
    expect(attempts).toEqual([0, 1, 2, 0, 1]);
  });

  it("command puller", async () => {
    const backoff = fast();
    const empty = (): Answer => ({ status: 200, body: { commands: [], head: 0, acked: 0 } });
    const { api, attempts, finished } = await scriptedServer("/agent/v1/commands", () => backoff, [busy, busy, empty, busy, empty]);
    const puller = new CommandPuller({ journal, api, log, onStored: () => {}, onReportsQueued: () => {}, backoff });
    await puller.start();
    await finished;
    await puller.stop();
    expect(attempts).toEqual([0, 1, 2, 0, 1]);
  });

  it("log uploader", async () => {
    let backoff: Backoff | undefined;
    const size = LIMITS.logChunkBytes + 1_000; // two chunks
    const stored = (length: number) => (): Answer => ({ status: 200, body: { length } });
    const { api, attempts, finished } = await scriptedServer("/agent/v1/steps/s0/log", () => backoff, [busy, busy, stored(LIMITS.logChunkBytes), busy, stored(size)]);
    await journal.storeCommands([{ kind: "valid", command: deploy }]);
    await journal.startStep("s0", "dep-1", 1);
    const paths = stepPaths(join(dir, "steps"), "s0");
    mkdirSync(paths.dir, { recursive: true });
    writeFileSync(paths.log, Buffer.alloc(size, "x"));
    await journal.finishStep("s0", "dep-1", { status: "succeeded", exitCode: 0, reason: null }, size, 2);
    let delivered = false;
    const uploader = new LogUploader({ journal, api, stepsDir: join(dir, "steps"), log, onDelivered: () => (delivered = true), newBackoff: () => (backoff = fast()) });
    uploader.watch("s0");
    await finished;
    await waitUntil(async () => delivered);
    uploader.stop();
    expect(attempts).toEqual([0, 1, 2, 0, 1]);
    expect((await journal.step("s0"))?.logUploaded).toBe(size);
  });
});

async function waitUntil(cond: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
