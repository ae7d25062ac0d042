// Upgrades keep logs: a D1 as the previous release left it (migrations 0000–0008, step
// output as byte rows in step_logs) takes migration 0009 (step_log_chunks, bytes in R2)
// and every log it held is still read whole — a finished step's, and a running step's
// that goes on uploading with the new release (docs/protocol.md §Logs, legacy rows).
import { applyD1Migrations } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { logKeyPrefix } from "../../d1/logs.ts";
import { call, registerAgent, type TestAgent } from "./helpers.ts";

const enc = new TextEncoder();

async function readAll(dep: string, stepId: string): Promise<{ bytes: Uint8Array; size: number; complete: string | null }> {
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (;;) {
    const res = await call(`/api/v1/deployments/${dep}/steps/${stepId}/log?offset=${offset}`);
    expect(res.status).toBe(200);
    const got = new Uint8Array(await res.arrayBuffer());
    parts.push(got);
    offset += got.byteLength;
    const size = Number(res.headers.get("x-log-size"));
    if (got.byteLength === 0 || offset >= size) {
      const bytes = new Uint8Array(offset);
      let at = 0;
      for (const p of parts) (bytes.set(p, at), (at += p.byteLength));
      return { bytes, size, complete: res.headers.get("x-log-complete") };
    }
  }
}

describe("D1 migration 0009 (step_log_chunks: log bytes in R2)", () => {
  it("keeps the previous release's logs readable, and a running step's log goes on after it", async () => {
    const migrations = env.TEST_MIGRATIONS!;
    const index = migrations.findIndex((m) => m.name.startsWith("0009_"));
    expect(index).toBe(9);
    // Back to an empty database, then the previous release's schema.
    const tables = await env.DB.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'").all<{ name: string }>();
    for (const t of tables.results) await env.DB.prepare(`DROP TABLE "${t.name}"`).run();
    await applyD1Migrations(env.DB, migrations.slice(0, index));
    expect((await env.DB.prepare("SELECT name FROM sqlite_master WHERE name = 'step_log_chunks'").all()).results).toEqual([]);

    // A registered agent (its credential works after the upgrade), with two steps: one
    // finished with a log of three 256 KiB-style rows, one still running.
    const agent: TestAgent = await registerAgent("old-logger");
    const done = new Uint8Array(600_000).map((_, i) => (i * 13 + (i >> 9)) % 251);
    const rows = [0, 262_144, 524_288].map((offset) => done.slice(offset, Math.min(done.byteLength, offset + 262_144)));
    const now = Date.now();
    await env.DB.batch([
      env.DB.prepare("INSERT INTO deployments (id, name, status, created_at, updated_at, agent_lost_after_seconds) VALUES ('d-old', 'old deploy', 'running', ?1, ?1, 900)").bind(now),
      env.DB.prepare("INSERT INTO deployment_targets (deployment_id, agent_id, command_id, dispatched_at) VALUES ('d-old', ?1, 'd-old:a', ?2)").bind(agent.agentId, now),
      env.DB.prepare(
        `INSERT INTO deployment_steps (id, deployment_id, agent_id, position, name, type, command, retry, status, exit_code, started_at, finished_at, reported_at, log_length)
         VALUES ('s-done', 'd-old', ?1, 0, 'build', 'shell', 'make', 'never', 'succeeded', 0, ?2, ?2, ?2, ?3),
                ('s-run', 'd-old', ?1, 1, 'test', 'shell', 'make test', 'never', 'running', NULL, ?2, NULL, NULL, 9)`,
      ).bind(agent.agentId, now, done.byteLength),
      ...rows.map((data, i) => env.DB.prepare("INSERT INTO step_logs (step_id, offset, data) VALUES ('s-done', ?1, ?2)").bind(i * 262_144, data)),
      env.DB.prepare("INSERT INTO step_logs (step_id, offset, data) VALUES ('s-run', 0, ?1)").bind(enc.encode("testing\n\n")),
    ]);

    await applyD1Migrations(env.DB, migrations);

    const finished = await readAll("d-old", "s-done");
    expect(finished.size).toBe(done.byteLength);
    expect(finished.complete).toBe("true");
    expect(finished.bytes).toEqual(done);
    const across = await call(`/api/v1/deployments/d-old/steps/s-done/log?offset=262000&limit=300000`);
    expect(new Uint8Array(await across.arrayBuffer())).toEqual(done.slice(262_000, 562_000));

    // The running step's agent resumes at the server's length; its new bytes go to R2.
    const put = await call("/agent/v1/steps/s-run/log?offset=9", { method: "PUT", body: enc.encode("passed\n") }, agent.credential);
    expect(put.status, await put.clone().text()).toBe(200);
    expect(await put.json()).toEqual({ length: 16 });
    expect((await env.LOGS.list({ prefix: logKeyPrefix("s-run") })).objects).toHaveLength(1);
    expect(new TextDecoder().decode((await readAll("d-old", "s-run")).bytes)).toBe("testing\n\npassed\n");
  });
});
