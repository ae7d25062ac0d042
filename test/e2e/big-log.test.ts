// docs/protocol.md §Logs, end to end: a step printing 40 MB of random bytes (past the
// previous release's 16 MiB cap) reaches the server losslessly — the bytes read back
// through the API by 1 MiB ranges have the sha256 of the bytes the step wrote.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { TestServer, type Proc } from "../support/local-server.ts";

const server = new TestServer();
let agent: Proc;
const NAME = "big-log-agent";
const BYTES = 40_000_000;

beforeAll(async () => {
  await server.start();
  const home = await server.registerAgent(NAME);
  agent = server.startAgent(NAME, home);
  await server.waitAgentOnline(NAME);
});

afterAll(async () => {
  await agent?.stop();
  await server.stop();
});

async function readRange(dep: string, stepId: string, offset: number) {
  const r = await fetch(`${server.base}/api/v1/deployments/${dep}/steps/${stepId}/log?offset=${offset}`, { headers: { authorization: `Bearer ${server.adminToken}` } });
  expect(r.status).toBe(200);
  return { bytes: Buffer.from(await r.arrayBuffer()), size: Number(r.headers.get("x-log-size")), complete: r.headers.get("x-log-complete") === "true" };
}

describe("§Logs: a large log end to end", () => {
  it("a 40 MB step output is read back with the sha256 of the bytes written", async () => {
    const written = join(server.work, "written.bin");
    const created = await server.api("POST", "/api/v1/deployments", {
      name: "big log",
      agents: [NAME],
      steps: [{ name: "print", type: "shell", command: `head -c ${BYTES} /dev/urandom | tee ${written}` }],
    });
    expect(created.status, created.text).toBe(201);
    const dep = created.json.id as string;
    const done = await server.waitDeployment(dep, 120_000);
    expect(done.steps[0]).toMatchObject({ status: "succeeded", exitCode: 0, reason: null });
    const stepId = done.steps[0].id as string;

    const hash = createHash("sha256");
    let offset = 0;
    let last = await readRange(dep, stepId, 0);
    for (;;) {
      expect(last.bytes.length).toBeLessThanOrEqual(1024 * 1024);
      hash.update(last.bytes);
      offset += last.bytes.length;
      if (offset >= last.size || last.bytes.length === 0) break;
      last = await readRange(dep, stepId, offset);
    }
    expect(last).toMatchObject({ size: BYTES, complete: true });
    expect(offset).toBe(BYTES);
    expect(hash.digest("hex")).toBe(createHash("sha256").update(readFileSync(written)).digest("hex"));
  });
});
