// docs/protocol.md §Logs, server side: bytes in R2 (LOGS), the index in D1
// (step_log_chunks), appends guarded by the stored length; reads by range (docs/api.md).
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { LIMITS } from "../../schema/limits.ts";
import { appendLogStream, deleteDeploymentLogs, deleteStepLogs, logKeyPrefix, logObjectKey, MAX_OBJECTS_PER_READ, MERGE_BELOW_BYTES, readLogRange, tryAppendAt } from "../../d1/logs.ts";
import { agentCall, call, createDeployment, expectError, finishedReport, postReports, registerAgent, startedReport, type DeployPull as PullResponse, type TestAgent } from "./helpers.ts";

const enc = new TextEncoder();
const KiB = 1024;

function upload(agent: TestAgent, stepId: string, offset: number | string, body: BodyInit): Promise<Response> {
  return agentCall(agent, `/agent/v1/steps/${stepId}/log?offset=${offset}`, { method: "PUT", body });
}

async function expectLength(res: Response, length: number) {
  const text = await res.text();
  expect(res.status, text).toBe(200);
  expect(JSON.parse(text)).toEqual({ length });
}

async function setup(name: string) {
  const agent = await registerAgent(name);
  const deploymentId = await createDeployment([agent.name]);
  const res = await agentCall(agent, "/agent/v1/commands?after=0");
  const { commands } = (await res.json()) as PullResponse;
  return { agent, deploymentId, stepId: commands[0].steps[0].stepId, cmd: commands[0] };
}

async function readAll(deploymentId: string, stepId: string): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (;;) {
    const res = await call(`/api/v1/deployments/${deploymentId}/steps/${stepId}/log?offset=${offset}`);
    expect(res.status).toBe(200);
    const bytes = new Uint8Array(await res.arrayBuffer());
    parts.push(bytes);
    offset += bytes.byteLength;
    if (offset >= Number(res.headers.get("x-log-size")) || bytes.byteLength === 0) break;
  }
  const out = new Uint8Array(offset);
  let at = 0;
  for (const p of parts) (out.set(p, at), (at += p.byteLength));
  return out;
}
const readText = async (deploymentId: string, stepId: string) => new TextDecoder().decode(await readAll(deploymentId, stepId));

type IndexRow = { offset: number; length: number; r2Key: string };
const indexRows = async (stepId: string) =>
  (await env.DB.prepare("SELECT offset, length, r2_key AS r2Key FROM step_log_chunks WHERE step_id = ? ORDER BY offset").bind(stepId).all<IndexRow>()).results;
const logLength = async (stepId: string) => (await env.DB.prepare("SELECT log_length AS n FROM deployment_steps WHERE id = ?").bind(stepId).first<{ n: number }>())!.n;
const objectKeys = async (stepId: string) => (await env.LOGS.list({ prefix: logKeyPrefix(stepId) })).objects.map((o) => o.key).sort();
const objectBytes = async (key: string) => new Uint8Array(await (await env.LOGS.get(key))!.arrayBuffer());

// Bytes that show any misplaced, doubled or missing byte.
const pattern = (n: number, seed = 0) => new Uint8Array(n).map((_, i) => (i * 7 + seed + (i >> 8)) % 251);

// The index tiles [0, log_length) and every row's object holds exactly its bytes; no
// object without a row (no orphan), no row without its object.
async function expectConsistent(stepId: string, expected: Uint8Array) {
  const rows = await indexRows(stepId);
  expect(await logLength(stepId)).toBe(expected.byteLength);
  let at = 0;
  for (const r of rows) {
    expect(r.offset, "rows tile the log").toBe(at);
    expect(r.r2Key.startsWith(logKeyPrefix(stepId))).toBe(true);
    expect(await objectBytes(r.r2Key)).toEqual(expected.slice(r.offset, r.offset + r.length));
    at += r.length;
  }
  expect(at).toBe(expected.byteLength);
  expect(await objectKeys(stepId)).toEqual(rows.map((r) => r.r2Key).sort());
}

describe("§Logs: upload by offset into R2 with a D1 index", () => {
  it("stores an accepted chunk as an R2 object and an index row, then reads it back", async () => {
    const { agent, deploymentId, stepId } = await setup("r2-chunk");
    const first = pattern(300 * KiB);
    await expectLength(await upload(agent, stepId, 0, first), first.byteLength);
    const rows = await indexRows(stepId);
    expect(rows).toEqual([{ offset: 0, length: first.byteLength, r2Key: expect.stringMatching(new RegExp(`^steps/${stepId}/0000000000000000-[0-9a-f]{16}$`)) }]);
    expect(await objectBytes(rows[0].r2Key)).toEqual(first);
    // Nothing of the bytes is in D1.
    expect((await env.DB.prepare("SELECT count(*) AS n FROM step_logs").first<{ n: number }>())!.n).toBe(0);

    const all = pattern(700 * KiB);
    await expectLength(await upload(agent, stepId, first.byteLength, all.slice(first.byteLength)), all.byteLength);
    expect((await indexRows(stepId)).map((r) => [r.offset, r.length])).toEqual([[0, 300 * KiB], [300 * KiB, 400 * KiB]]);
    await expectConsistent(stepId, all);
    expect(await readAll(deploymentId, stepId)).toEqual(all);
  });

  it("appends, skips what it holds on retries and overlaps, refuses gaps (409 with length), reads back", async () => {
    const { agent, deploymentId, stepId } = await setup("logger");
    expect(await readText(deploymentId, stepId)).toBe("");
    await expectLength(await upload(agent, stepId, 0, enc.encode("hello ")), 6);
    // The same chunk again (lost answer): nothing duplicated.
    await expectLength(await upload(agent, stepId, 0, enc.encode("hello ")), 6);
    // Overlap: "lo " already held, "wörld" new (multi-byte UTF-8).
    await expectLength(await upload(agent, stepId, 3, enc.encode("lo wörld")), 12);
    // A gap: 409 with the server's length; nothing stored.
    const body = await expectError(await upload(agent, stepId, 20, enc.encode("later")), 409, /beyond/);
    expect(body.length).toBe(12);
    // An empty chunk at the end is a no-op.
    await expectLength(await upload(agent, stepId, 12, new Uint8Array(0)), 12);
    await expectLength(await upload(agent, stepId, 12, enc.encode("\n")), 13);
    expect(await readText(deploymentId, stepId)).toBe("hello wörld\n");
    // Small pieces were merged into one object; the replaced ones are gone.
    expect((await indexRows(stepId)).map((r) => [r.offset, r.length])).toEqual([[0, 13]]);
    await expectConsistent(stepId, enc.encode("hello wörld\n"));
  });

  it("stores only the bytes beyond the stored length of a large overlapping chunk", async () => {
    const { agent, deploymentId, stepId } = await setup("overlap-big");
    const all = pattern(900 * KiB, 3);
    await expectLength(await upload(agent, stepId, 0, all.slice(0, 500 * KiB)), 500 * KiB);
    // A retry of a larger chunk from 100 KiB: 400 KiB already held, 400 KiB new.
    await expectLength(await upload(agent, stepId, 100 * KiB, all.slice(100 * KiB)), 900 * KiB);
    expect((await indexRows(stepId)).map((r) => [r.offset, r.length])).toEqual([[0, 500 * KiB], [500 * KiB, 400 * KiB]]);
    await expectConsistent(stepId, all);
    expect(await readAll(deploymentId, stepId)).toEqual(all);
  });

  it("never duplicates, leaves a gap, an orphan index row or an orphan object under concurrent uploads at the same offset", async () => {
    const { agent, deploymentId, stepId } = await setup("racer");
    const chunk = enc.encode("0123456789");
    const results = await Promise.all(Array.from({ length: 8 }, () => upload(agent, stepId, 0, chunk)));
    for (const r of results) await expectLength(r, 10);
    const overlapping = await Promise.all([upload(agent, stepId, 5, enc.encode("56789abc")), upload(agent, stepId, 10, enc.encode("abcdef"))]);
    for (const r of overlapping) expect(r.status).toBe(200);
    expect(await readText(deploymentId, stepId)).toBe("0123456789abcdef");
    await expectConsistent(stepId, enc.encode("0123456789abcdef"));

    // Large chunks (no merging) raced the same way.
    const big = pattern(600 * KiB, 9);
    const base = enc.encode("0123456789abcdef");
    const all = new Uint8Array(base.byteLength + big.byteLength);
    all.set(base);
    all.set(big, base.byteLength);
    const raced = await Promise.all(Array.from({ length: 6 }, () => upload(agent, stepId, base.byteLength, big)));
    for (const r of raced) await expectLength(r, all.byteLength);
    await expectConsistent(stepId, all);
    expect(await readAll(deploymentId, stepId)).toEqual(all);
  });

  it("streams a large chunk into R2; a body that breaks off stores nothing (503: send it again)", async () => {
    const { agent, deploymentId, stepId } = await setup("stream");
    const chunk = pattern(MERGE_BELOW_BYTES + 5, 6);
    const body = (bytes: Uint8Array, closeAfter = bytes.byteLength) => {
      const s = new FixedLengthStream(bytes.byteLength);
      const w = s.writable.getWriter();
      void (async () => {
        await w.write(bytes.subarray(0, closeAfter)).catch(() => undefined);
        if (closeAfter < bytes.byteLength) await w.abort(new Error("the agent went away")).catch(() => undefined);
        else await w.close();
      })();
      return s.readable;
    };
    const neverRead = async (): Promise<Uint8Array> => {
      throw new Error("a chunk whose bytes are all new is not read into memory");
    };
    const broken = await appendLogStream(env, agent.agentId, stepId, 0, body(chunk, 1000), chunk.byteLength, neverRead);
    expect(broken).toEqual({ kind: "not-stored" });
    expect(await logLength(stepId)).toBe(0);
    expect(await objectKeys(stepId)).toEqual([]);
    expect(await appendLogStream(env, agent.agentId, stepId, 0, body(chunk), chunk.byteLength, neverRead)).toEqual({ kind: "stored", length: chunk.byteLength });
    await expectConsistent(stepId, chunk);
    // A retry of it (overlapping) is read, not streamed, and stores nothing new.
    expect(await appendLogStream(env, agent.agentId, stepId, 0, body(chunk), chunk.byteLength, async () => chunk)).toEqual({ kind: "stored", length: chunk.byteLength });
    await expectConsistent(stepId, chunk);
    expect(await readAll(deploymentId, stepId)).toEqual(chunk);
  });

  it("refuses an append planned against a stale length, and deletes the object it wrote", async () => {
    const { agent, deploymentId, stepId } = await setup("stale");
    await expectLength(await upload(agent, stepId, 0, enc.encode("abcdef")), 6);
    // A writer that read length 3 before the upload above committed must not write.
    expect(await tryAppendAt(env, stepId, 3, enc.encode("XYZ"))).toBe(false);
    expect(await tryAppendAt(env, stepId, 6, enc.encode("gh"))).toBe(true);
    expect(await tryAppendAt(env, stepId, 6, enc.encode("gh"))).toBe(false);
    expect(await readText(deploymentId, stepId)).toBe("abcdefgh");
    await expectConsistent(stepId, enc.encode("abcdefgh"));
  });

  it("limits a chunk to LIMITS.logChunkBytes (8 MiB) and a step to LIMITS.logBytesPerStep (1 GiB)", async () => {
    expect(LIMITS.logChunkBytes).toBe(8 * 1024 * 1024);
    expect(LIMITS.logBytesPerStep).toBe(1024 * 1024 * 1024);
    const { agent, deploymentId, stepId } = await setup("big");
    await expectError(await upload(agent, stepId, 0, new Uint8Array(LIMITS.logChunkBytes + 1)), 413, /larger than/);
    expect(await objectKeys(stepId)).toEqual([]);
    // A whole chunk of the largest size is taken, and read back in 1 MiB ranges.
    const full = pattern(LIMITS.logChunkBytes, 5);
    await expectLength(await upload(agent, stepId, 0, full), full.byteLength);
    await expectConsistent(stepId, full);
    const mid = await call(`/api/v1/deployments/${deploymentId}/steps/${stepId}/log?offset=${3 * 1024 * 1024 + 7}&limit=${1024 * 1024}`);
    expect(new Uint8Array(await mid.arrayBuffer())).toEqual(full.slice(3 * 1024 * 1024 + 7, 4 * 1024 * 1024 + 7));

    const { agent: a2, stepId: s2 } = await setup("capped");
    await env.DB.prepare("UPDATE deployment_steps SET log_length = ? WHERE id = ?").bind(LIMITS.logBytesPerStep - 10, s2).run();
    const body = await expectError(await upload(a2, s2, LIMITS.logBytesPerStep - 10, new Uint8Array(11)), 413, /1073741824/);
    expect(body.length).toBe(LIMITS.logBytesPerStep - 10);
    expect(await objectKeys(s2)).toEqual([]);
  });

  it("is closed once the final result is in: 410 with length for new bytes, 200 for a chunk already held", async () => {
    const { agent, stepId, cmd } = await setup("closed");
    await expectLength(await upload(agent, stepId, 0, enc.encode("all of it\n")), 10);
    expect((await postReports(agent, [startedReport(cmd, 0), finishedReport(cmd, 0, "succeeded", 0)])).status).toBe(200);
    const body = await expectError(await upload(agent, stepId, 10, enc.encode("more\n")), 410, /ended/);
    expect(body.length).toBe(10);
    await expectLength(await upload(agent, stepId, 0, enc.encode("all of it\n")), 10);
    await expectConsistent(stepId, enc.encode("all of it\n"));
  });

  it("answers 404 for a step that is not this agent's, 400 for a bad offset", async () => {
    const { stepId } = await setup("owner");
    const other = await registerAgent("intruder");
    await expectError(await upload(other, stepId, 0, enc.encode("x")), 404, /not one of this agent's steps/);
    await expectError(await upload(other, "no-such-step", 0, enc.encode("x")), 404);
    await expectError(await upload(other, stepId, -1, enc.encode("x")), 400, /offset/);
    await expectError(await agentCall(other, `/agent/v1/steps/${stepId}/log`, { method: "PUT", body: "x" }), 400, /offset/);
    await expectError(await upload({ ...other, credential: "nope" }, stepId, 0, "x"), 401);
    expect(await objectKeys(stepId)).toEqual([]);
  });
});

describe("§Logs: merging small pieces", () => {
  it("keeps a line-at-a-time log in few objects, so a range reads few objects", async () => {
    const { agent, deploymentId, stepId } = await setup("chatty");
    const lines = Array.from({ length: 120 }, (_, i) => `line ${i} ${"x".repeat(i % 40)}\n`).join("");
    const bytes = enc.encode(lines);
    // 120 uploads of one line each: one object, since all stay small together.
    let at = 0;
    for (const line of lines.split(/(?<=\n)/)) {
      const b = enc.encode(line);
      await expectLength(await upload(agent, stepId, at, b), at + b.byteLength);
      at += b.byteLength;
    }
    expect((await indexRows(stepId)).length).toBe(1);
    await expectConsistent(stepId, bytes);
    // A large piece is an object of its own; after a large object, a small piece starts a new one.
    const big = pattern(MERGE_BELOW_BYTES, 1);
    await expectLength(await upload(agent, stepId, at, big), at + big.byteLength);
    await expectLength(await upload(agent, stepId, at + big.byteLength, enc.encode("after\n")), at + big.byteLength + 6);
    expect((await indexRows(stepId)).map((r) => r.length)).toEqual([bytes.byteLength, big.byteLength, 6]);
    const all = new Uint8Array([...bytes, ...big, ...enc.encode("after\n")]);
    await expectConsistent(stepId, all);
    expect(await readAll(deploymentId, stepId)).toEqual(all);
  });

  it("readers during merges always see a whole prefix of the log", async () => {
    const { agent, deploymentId, stepId } = await setup("merge-reader");
    const all = pattern(40 * 1000, 11);
    let stop = false;
    const reader = async () => {
      while (!stop) {
        const res = await call(`/api/v1/deployments/${deploymentId}/steps/${stepId}/log`);
        expect(res.status).toBe(200);
        const got = new Uint8Array(await res.arrayBuffer());
        expect(got.byteLength).toBe(Number(res.headers.get("x-log-size")));
        expect(got).toEqual(all.slice(0, got.byteLength));
      }
    };
    const reads = [reader(), reader(), reader()];

    // A merge landing between a reader's index read and its object fetch, for sure: the
    // fetch finds the old object gone, and the reader reads the index again.
    await expectLength(await upload(agent, stepId, 0, all.slice(0, 1000)), 1000);
    const [tail] = await indexRows(stepId);
    let merged = false;
    const racing = {
      DB: env.DB,
      LOGS: new Proxy(env.LOGS, {
        get(target, prop) {
          if (prop !== "get") return (Reflect.get(target, prop) as (...a: unknown[]) => unknown).bind(target);
          return async (key: string, options?: R2GetOptions) => {
            if (!merged) {
              merged = true;
              expect(await tryAppendAt(env, stepId, 1000, all.slice(1000, 2000), tail)).toBe(true);
              expect(await env.LOGS.head(tail.r2Key)).toBeNull();
            }
            return target.get(key, options);
          };
        },
      }) as R2Bucket,
    };
    const raced = await readLogRange(racing, deploymentId, stepId, 0, 1500);
    expect(merged).toBe(true);
    expect(raced).toEqual({ bytes: all.slice(0, 1500), size: 2000, complete: false });

    for (let at = 2000; at < all.byteLength; at += 1000) await expectLength(await upload(agent, stepId, at, all.slice(at, at + 1000)), at + 1000);
    stop = true;
    await Promise.all(reads);
    await expectConsistent(stepId, all);
  });
});

describe("§Logs: reads by range (docs/api.md)", () => {
  it("reads across object boundaries, only the range's part of each", async () => {
    const { agent, deploymentId, stepId } = await setup("ranges");
    const sizes = [300 * KiB, 700 * KiB, 260 * KiB, 1200 * KiB];
    const all = pattern(sizes.reduce((a, b) => a + b), 2);
    let at = 0;
    for (const n of sizes) {
      await expectLength(await upload(agent, stepId, at, all.slice(at, at + n)), at + n);
      at += n;
    }
    expect((await indexRows(stepId)).length).toBe(4);
    for (const [offset, limit] of [[0, 1], [300 * KiB - 3, 6], [290 * KiB, 1024 * KiB], [1000 * KiB - 1, 262 * KiB], [all.byteLength - 5, 1024 * KiB], [all.byteLength, 10]]) {
      const res = await call(`/api/v1/deployments/${deploymentId}/steps/${stepId}/log?offset=${offset}&limit=${limit}`);
      expect(res.status).toBe(200);
      expect(res.headers.get("x-log-size")).toBe(String(all.byteLength));
      expect(new Uint8Array(await res.arrayBuffer()), `${offset}+${limit}`).toEqual(all.slice(offset, Math.min(all.byteLength, offset + limit)));
    }
    expect(await readAll(deploymentId, stepId)).toEqual(all);
    await expectError(await call(`/api/v1/deployments/${deploymentId}/steps/${stepId}/log?offset=${all.byteLength + 1}`), 416, /beyond/);
  });

  it("answers a range spanning more objects than one read takes in part, and the reader goes on", async () => {
    const { deploymentId, stepId } = await setup("many-objects");
    // Objects of 100 bytes each, appended directly (no merging).
    const n = MAX_OBJECTS_PER_READ + 8;
    const all = pattern(n * 100, 4);
    for (let i = 0; i < n; i++) expect(await tryAppendAt(env, stepId, i * 100, all.slice(i * 100, (i + 1) * 100))).toBe(true);
    expect((await indexRows(stepId)).length).toBe(n);
    const first = await call(`/api/v1/deployments/${deploymentId}/steps/${stepId}/log`);
    const got = new Uint8Array(await first.arrayBuffer());
    expect(got.byteLength).toBeLessThan(all.byteLength);
    expect(got).toEqual(all.slice(0, got.byteLength));
    expect(await readAll(deploymentId, stepId)).toEqual(all);
  });

  it("reads a log of the previous release (legacy step_logs rows) and one continued after the upgrade", async () => {
    const { agent, deploymentId, stepId } = await setup("legacy");
    // What the previous release stored: bytes in step_logs rows, log_length their sum.
    await env.DB.batch([
      env.DB.prepare("INSERT INTO step_logs (step_id, offset, data) VALUES (?, 0, ?), (?, 6, ?)").bind(stepId, enc.encode("hello "), stepId, enc.encode("old ")),
      env.DB.prepare("UPDATE deployment_steps SET log_length = 10 WHERE id = ?").bind(stepId),
    ]);
    expect(await readText(deploymentId, stepId)).toBe("hello old ");
    // The same step goes on uploading with this release: no merge into a legacy row.
    await expectLength(await upload(agent, stepId, 8, enc.encode("d new\n")), 14);
    await expectLength(await upload(agent, stepId, 14, enc.encode("more\n")), 19);
    expect((await indexRows(stepId)).map((r) => [r.offset, r.length])).toEqual([[10, 9]]);
    expect(await readText(deploymentId, stepId)).toBe("hello old new\nmore\n");
    const across = await call(`/api/v1/deployments/${deploymentId}/steps/${stepId}/log?offset=4&limit=9`);
    expect(await across.text()).toBe("o old new");
  });
});

describe("§Logs: deleting a step's logs", () => {
  it("removes the index rows, legacy rows and every R2 object of the steps (orphans too), and nothing of other steps", async () => {
    const a = await setup("delete-a");
    const b = await setup("delete-b");
    await expectLength(await upload(a.agent, a.stepId, 0, pattern(400 * KiB)), 400 * KiB);
    await expectLength(await upload(a.agent, a.stepId, 400 * KiB, pattern(300 * KiB)), 700 * KiB);
    await env.DB.prepare("INSERT INTO step_logs (step_id, offset, data) VALUES (?, 0, ?)").bind(a.stepId, enc.encode("legacy")).run();
    await env.LOGS.put(logObjectKey(a.stepId, 700 * KiB), "an append that failed half-way"); // no index row
    await expectLength(await upload(b.agent, b.stepId, 0, enc.encode("keep me\n")), 8);
    expect((await objectKeys(a.stepId)).length).toBe(3);

    expect(await deleteStepLogs(env, [a.stepId])).toEqual({ objects: 3 });
    expect(await objectKeys(a.stepId)).toEqual([]);
    expect(await indexRows(a.stepId)).toEqual([]);
    expect((await env.DB.prepare("SELECT count(*) AS n FROM step_logs WHERE step_id = ?").bind(a.stepId).first<{ n: number }>())!.n).toBe(0);
    expect(await readText(a.deploymentId, a.stepId)).toBe("");
    expect(await readText(b.deploymentId, b.stepId)).toBe("keep me\n");
    // Again: nothing left to do.
    expect(await deleteStepLogs(env, [a.stepId])).toEqual({ objects: 0 });

    expect(await deleteDeploymentLogs(env, [b.deploymentId])).toEqual({ objects: 1 });
    expect(await objectKeys(b.stepId)).toEqual([]);
  });

  it("readLogRange answers null for a step of another deployment", async () => {
    const a = await setup("other-dep");
    expect(await readLogRange(env, "no-such-deployment", a.stepId, 0, 10)).toBeNull();
  });
});
