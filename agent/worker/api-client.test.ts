// The agent's HTTP client against small real HTTP servers on 127.0.0.1: body caps,
// redirects never followed, report times, 410 on log upload, revoked vs plain 401,
// and errors that never quote a command (docs/protocol.md §Commands, §Reports, §Logs, §Revoke).
import { afterEach, describe, expect, it } from "vitest";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { AGENT_REVOKED } from "../../schema/agent-api.ts";
import { CommandHeadBehindError, describeCause, HttpStatusError, ProtocolError, RedirectError, shouldRetry } from "../errors.ts";
import { ApiClient, DEFAULT_BODY_CAP, PULL_BODY_CAP } from "./api-client.ts";
import { startedReport } from "./reports.ts";

type Seen = { method: string; url: string; body: string; headers: http.IncomingHttpHeaders };
type Handler = (req: Seen, res: http.ServerResponse) => void;
const servers: http.Server[] = [];

async function serve(handler: Handler): Promise<{ base: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const s = { method: req.method!, url: req.url!, body: Buffer.concat(chunks).toString(), headers: req.headers };
      seen.push(s);
      handler(s, res);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

const json = (res: http.ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
};
// Streams `bytes` of a JSON string without announcing a length, as a chunked answer.
const streamJson = (res: http.ServerResponse, bytes: number) => {
  res.writeHead(200, { "content-type": "application/json" });
  res.write('{"commands":[],"head":0,"acked":0,"pad":"');
  const chunk = "x".repeat(64 * 1024);
  let sent = 0;
  const more = () => {
    while (sent < bytes) {
      sent += chunk.length;
      if (!res.write(chunk)) return void res.once("drain", more);
    }
    res.end('"}');
  };
  more();
};

describe("api client", () => {
  it("reads at most 8 MiB of a pull and 1 MiB of any other answer: more is a ProtocolError, retried", async () => {
    const { base } = await serve((req, res) => streamJson(res, req.url.startsWith("/agent/v1/commands") ? PULL_BODY_CAP + 1 : DEFAULT_BODY_CAP + 1));
    const api = new ApiClient(base, "cred");
    const pull = await api.pull(0, 0).catch((e) => e);
    expect(pull).toBeInstanceOf(ProtocolError);
    expect(pull.message).toMatch(/larger than 8388608 bytes/);
    const post = await api.postReports([startedReport("s1", "d1", 1)]).catch((e) => e);
    expect(post).toBeInstanceOf(ProtocolError);
    expect(post.message).toMatch(/larger than 1048576 bytes/);
    // …and one that says its size up front is not read at all.
    const { base: announced } = await serve((_req, res) => {
      res.writeHead(200, { "content-length": String(PULL_BODY_CAP * 4) });
      res.write("x");
    });
    expect(await new ApiClient(announced, "cred").pull(0, 0).catch((e) => e)).toBeInstanceOf(ProtocolError);
    // A pull of 100 full-size commands still fits.
    const { base: full } = await serve((_req, res) => streamJson(res, 100 * 64 * 1024));
    expect(await new ApiClient(full, "cred").pull(0, 0)).toMatchObject({ head: 0, acked: 0 });
  });

  it("never follows a redirect: the error names where it pointed, and the target gets nothing", async () => {
    const target = await serve((_req, res) => json(res, 200, { commands: [], head: 0, acked: 0 }));
    const { base } = await serve((req, res) => {
      res.writeHead(307, { location: `${target.base}${req.url}` });
      res.end();
    });
    const e = await new ApiClient(base, "cred").pull(0, 0).catch((x) => x);
    expect(e).toBeInstanceOf(RedirectError);
    expect(e.message).toContain(`redirected (HTTP 307) to ${target.base}/agent/v1/commands`);
    expect(e.message).toMatch(/--server .* must name the final address/);
    expect(shouldRetry(e)).toBe(true);
    expect(target.seen).toEqual([]);
  });

  it("stamps each report batch with sentAt, the agent's clock just before sending", async () => {
    const { base, seen } = await serve((_req, res) => json(res, 200, { acked: ["s1:started"] }));
    const before = Date.now();
    expect(await new ApiClient(base, "cred").postReports([startedReport("s1", "d1", before - 5_000)])).toEqual(["s1:started"]);
    const body = JSON.parse(seen[0].body);
    expect(body.sentAt).toBeGreaterThanOrEqual(before);
    expect(body.sentAt).toBeLessThanOrEqual(Date.now());
    expect(body.reports).toHaveLength(1);
  });

  it("hands back a log upload answered 409, 410 or 413 (part of the upload protocol) instead of failing; throws on any other refusal", async () => {
    let status = 410;
    const { base, seen } = await serve((_req, res) => json(res, status, { error: "no", length: 12 }));
    const api = new ApiClient(base, "cred");
    for (status of [409, 410, 413]) expect(await api.putLog("s1", 20, new Uint8Array([1, 2]))).toEqual({ status, body: { error: "no", length: 12 } });
    expect(seen[0].headers["content-type"]).toBe("application/octet-stream");
    expect(seen[0].url).toBe("/agent/v1/steps/s1/log?offset=20");
    status = 404;
    await expect(api.putLog("s1", 20, new Uint8Array([1]))).rejects.toBeInstanceOf(HttpStatusError);
  });

  it("turns a pull answered 409 (after > head) into a CommandHeadBehindError, retried", async () => {
    const { base } = await serve((_req, res) => json(res, 409, { error: "after 9 is beyond head 4", head: 4 }));
    const e = await new ApiClient(base, "cred").pull(9, 0).catch((x) => x);
    expect(e).toBeInstanceOf(CommandHeadBehindError);
    expect(e).toMatchObject({ status: 409, head: 4, after: 9 });
    expect(shouldRetry(e)).toBe(true);
  });

  it("calls onRevoked only for the server's explicit revoked answer; any other 401 is retried", async () => {
    let body: unknown = { error: "this agent has been revoked", code: AGENT_REVOKED };
    const { base } = await serve((_req, res) => json(res, 401, body));
    const revoked: string[] = [];
    const api = new ApiClient(base, "cred", { onRevoked: (e) => revoked.push(e.message) });
    const e1 = await api.pull(0, 0).catch((x) => x);
    expect(e1).toBeInstanceOf(HttpStatusError);
    expect(revoked).toHaveLength(1);
    for (const plain of [{ error: "invalid agent credential" }, "<html>proxy login</html>", { error: "x", code: "something-else" }]) {
      body = plain;
      const e = await api.pull(0, 0).catch((x) => x);
      expect(shouldRetry(e), JSON.stringify(plain)).toBe(true);
      expect(e.message).toMatch(/refused this agent's credential without saying it is revoked: retrying/);
    }
    expect(revoked).toHaveLength(1);
  });

  it("never puts a pulled command's text in an error", async () => {
    const SECRET = "echo hunter2-SECRET-COMMAND-TEXT";
    const { base } = await serve((_req, res) => json(res, 200, { commands: [{ seq: 1, steps: [{ command: SECRET }] }], head: "not a number", acked: 0 }));
    const e = await new ApiClient(base, "cred").pull(0, 0).catch((x) => x);
    expect(e).toBeInstanceOf(ProtocolError);
    expect(e.message).toMatch(/unexpected pull answer: head: /);
    // what the logger prints: the message, its causes and its context
    expect(`${describeCause(e)} ${JSON.stringify(e.context)}`).not.toContain("hunter2");
  });
});
