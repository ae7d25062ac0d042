import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { LIMITS } from "../../schema/limits.ts";
import { tryAppendAt } from "../../worker/logs.ts";
import { agentCall, call, createDeployment, expectError, registerAgent, type DeployPull as PullResponse, type TestAgent } from "./helpers.ts";

const enc = new TextEncoder();

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
  return { agent, deploymentId, stepId: commands[0].steps[0].stepId };
}

const readLog = async (deploymentId: string, stepId: string) => {
  const res = await call(`/api/v1/deployments/${deploymentId}/steps/${stepId}/log`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("text/plain; charset=utf-8");
  return res.text();
};

describe("log upload by offset", () => {
  it("appends, skips what it holds on retries and overlaps, refuses gaps, reads back", async () => {
    const { agent, deploymentId, stepId } = await setup("logger");
    expect(await readLog(deploymentId, stepId)).toBe("");
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
    expect(await readLog(deploymentId, stepId)).toBe("hello wörld\n");
    const rows = await env.DB.prepare("SELECT offset, length(data) AS n FROM step_logs WHERE step_id = ? ORDER BY offset").bind(stepId).all();
    expect(rows.results).toEqual([{ offset: 0, n: 6 }, { offset: 6, n: 6 }, { offset: 12, n: 1 }]);
  });

  it("never duplicates or leaves a gap under concurrent uploads at the same offset", async () => {
    const { agent, deploymentId, stepId } = await setup("racer");
    const chunk = enc.encode("0123456789");
    const results = await Promise.all(Array.from({ length: 8 }, () => upload(agent, stepId, 0, chunk)));
    for (const r of results) await expectLength(r, 10);
    const overlapping = await Promise.all([upload(agent, stepId, 5, enc.encode("56789abc")), upload(agent, stepId, 10, enc.encode("abcdef"))]);
    for (const r of overlapping) expect(r.status).toBe(200);
    expect(await readLog(deploymentId, stepId)).toBe("0123456789abcdef");
  });

  it("refuses an append planned against a stale length (the guard behind concurrent uploads)", async () => {
    const { agent, deploymentId, stepId } = await setup("stale");
    await expectLength(await upload(agent, stepId, 0, enc.encode("abcdef")), 6);
    // A writer that read length 3 before the upload above committed must not write.
    expect(await tryAppendAt(env, stepId, 3, enc.encode("XYZ"))).toBe(false);
    expect(await tryAppendAt(env, stepId, 6, enc.encode("gh"))).toBe(true);
    expect(await tryAppendAt(env, stepId, 6, enc.encode("gh"))).toBe(false);
    expect(await readLog(deploymentId, stepId)).toBe("abcdefgh");
  });

  it("limits a chunk to 256 KiB and a step to 16 MiB", async () => {
    const { agent, stepId } = await setup("big");
    await expectError(await upload(agent, stepId, 0, new Uint8Array(LIMITS.logChunkBytes + 1)), 413, /larger than/);
    await env.DB.prepare("UPDATE deployment_steps SET log_length = ? WHERE id = ?").bind(LIMITS.logBytesPerStep - 10, stepId).run();
    await expectError(await upload(agent, stepId, LIMITS.logBytesPerStep - 10, new Uint8Array(11)), 413, /16777216/);
  });

  it("answers 404 for a step that is not this agent's, 400 for a bad offset", async () => {
    const { stepId } = await setup("owner");
    const other = await registerAgent("intruder");
    await expectError(await upload(other, stepId, 0, enc.encode("x")), 404, /not one of this agent's steps/);
    await expectError(await upload(other, "no-such-step", 0, enc.encode("x")), 404);
    await expectError(await upload(other, stepId, -1, enc.encode("x")), 400, /offset/);
    await expectError(await agentCall(other, `/agent/v1/steps/${stepId}/log`, { method: "PUT", body: "x" }), 400, /offset/);
    await expectError(await upload({ ...other, credential: "nope" }, stepId, 0, "x"), 401);
  });
});
