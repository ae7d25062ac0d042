// plugins/http-check, step wait-for-url, run as the agent runs it (run-plugin.ts) against
// a real HTTP server on 127.0.0.1: retries until the status (and body text) match,
// per-attempt and overall deadlines, SIGTERM, invalid inputs, outputs.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { MANIFEST_FILE, pluginManifest } from "../../schema/plugin.ts";
import { cleanup, loadManifest, pluginsRoot, runPluginStep, startPluginStep } from "./run-plugin.ts";

let server: Server;
let base: string;
const hits = new Map<string, number>(); // path?key → requests seen

beforeAll(async () => {
  server = createServer((req, res) => {
    const u = new URL(req.url!, "http://x");
    const id = u.pathname + "?" + (u.searchParams.get("key") ?? "");
    const n = (hits.get(id) ?? 0) + 1;
    hits.set(id, n);
    const send = (status: number, body = "", headers: Record<string, string> = {}) => {
      res.writeHead(status, { "content-type": "text/plain", ...headers });
      res.end(body);
    };
    switch (u.pathname) {
      case "/ok":
        return send(200, "ok");
      case "/flaky": // down twice, then up
        return n <= 2 ? send(503, "starting") : send(200, "up");
      case "/always-503":
        return send(503);
      case "/warming": // up at once, but ready only from the third answer
        return send(200, n <= 2 ? "status: starting" : "status: ready");
      case "/hang": // accepts the request and never answers
        return;
      case "/hang-once":
        return n === 1 ? undefined : send(200, "ok");
      case "/redirect":
        return send(302, "", { location: "/ok" });
      case "/auth":
        return req.headers.authorization === `Basic ${Buffer.from("deploy:pa ss").toString("base64")}` ? send(200, "hello") : send(401);
      default:
        return send(404);
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterEach(cleanup);
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

let keys = 0;
const fresh = (path: string) => `${base}${path}?key=k${++keys}`;
const hitsOf = (url: string) => hits.get(new URL(url).pathname + "?" + new URL(url).searchParams.get("key")) ?? 0;

async function waitUntil(cond: () => boolean, ms: number, what: string) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe("manifest", () => {
  it("declares wait-for-url with its inputs, defaults and outputs, run through sh run.sh", () => {
    const m = loadManifest("http-check");
    expect(m).toMatchObject({ id: "http-check", version: "1.0.0" });
    const step = m.steps.find((s) => s.name === "wait-for-url")!;
    expect(step.run).toEqual(["sh", "run.sh"]);
    const byName = Object.fromEntries(step.inputs.map((i) => [i.name, i]));
    expect(byName.url).toMatchObject({ type: "string", required: true });
    expect(byName.expectStatus).toMatchObject({ type: "number", default: 200 });
    expect(byName.timeoutSeconds).toMatchObject({ type: "number", default: 60 });
    expect(byName.intervalSeconds).toMatchObject({ type: "number", default: 2 });
    expect(byName.contains).toMatchObject({ type: "string", required: false });
    expect(step.outputs.map((o) => o.name)).toEqual(["status", "attempts", "elapsedMs"]);
    expect(readFileSync(join(pluginsRoot, "http-check/run.sh"), "utf8")).toMatch(/exec "\$\{OUTPOST_NODE:-node\}"/);
  });

  it("every plug-in under plugins/ has a manifest that pluginManifest accepts", () => {
    const folders = readdirSync(pluginsRoot, { withFileTypes: true }).filter((d) => d.isDirectory());
    expect(folders.map((d) => d.name)).toEqual(expect.arrayContaining(["http-check", "template"]));
    for (const d of folders) {
      const file = join(pluginsRoot, d.name, MANIFEST_FILE);
      expect(existsSync(file), file).toBe(true);
      const r = pluginManifest.safeParse(JSON.parse(readFileSync(file, "utf8")));
      expect(r.success, `${file}: ${r.error?.message}`).toBe(true);
    }
  });
});

describe("wait-for-url", () => {
  it("retries a 503 until the 200, one line per attempt, and records status, attempts and elapsed time", async () => {
    const url = fresh("/flaky");
    const r = await runPluginStep("http-check", "wait-for-url", { url, intervalSeconds: 0.2 });
    expect(r.code, r.log).toBe(0);
    const attempts = r.lines.filter((l) => l.startsWith("attempt "));
    expect(attempts).toHaveLength(3);
    expect(attempts[0]).toMatch(/^attempt 1: 503 Service Unavailable \(expected 200\) \(\d+ ms\)$/);
    expect(attempts[1]).toMatch(/^attempt 2: 503 /);
    expect(attempts[2]).toMatch(/^attempt 3: 200 OK \(\d+ ms\)$/);
    expect(r.lines.at(-1)).toMatch(/^OK: .*\/flaky\?key=\w+ answered 200 after 3 attempts in /);
    expect(hitsOf(url)).toBe(3);
    expect(r.outputs).toMatchObject({ status: "200", attempts: "3" });
    const elapsed = Number(r.outputs!.elapsedMs);
    expect(elapsed).toBeGreaterThanOrEqual(400); // two pauses of 0.2 s
    expect(elapsed).toBeLessThan(5_000);
  });

  it("with contains, a 200 whose body lacks the text is another attempt", async () => {
    const r = await runPluginStep("http-check", "wait-for-url", { url: fresh("/warming"), contains: "ready", intervalSeconds: 0.1 });
    expect(r.code, r.log).toBe(0);
    expect(r.lines).toContainEqual(expect.stringMatching(/^attempt 1: 200 OK, body does not contain "ready"/));
    expect(r.lines).toContainEqual(expect.stringMatching(/^attempt 3: 200 OK, body contains "ready"/));
    expect(r.outputs).toMatchObject({ status: "200", attempts: "3" });
  });

  it("fails at the deadline with the last result when the body never contains the text", async () => {
    const r = await runPluginStep("http-check", "wait-for-url", { url: fresh("/ok"), contains: "never-there", timeoutSeconds: 0.5, intervalSeconds: 0.1 });
    expect(r.code, r.log).toBe(1);
    expect(r.lines.at(-1)).toMatch(/^FAILED: .* did not answer 200 with "never-there" in the body within 0\.5 s \(\d+ attempts\); last: 200 OK, body does not contain "never-there"$/);
    expect(r.outputs!.status).toBe("200");
    expect(Number(r.outputs!.attempts)).toBeGreaterThanOrEqual(2);
  });

  it("an attempt that gets no answer ends at the overall deadline, not later", async () => {
    const url = fresh("/hang");
    const r = await runPluginStep("http-check", "wait-for-url", { url, timeoutSeconds: 1, intervalSeconds: 0.1 });
    expect(r.code, r.log).toBe(1);
    expect(r.lines).toContainEqual(expect.stringMatching(/^attempt 1: no answer within 1 s \(\d+ ms\)$/));
    expect(r.lines.at(-1)).toMatch(/^FAILED: .* did not answer 200 within 1 s \(1 attempt\); last: no answer within 1 s$/);
    expect(r.outputs).toMatchObject({ status: "", attempts: "1" });
    expect(Number(r.outputs!.elapsedMs)).toBeGreaterThanOrEqual(950);
    expect(r.ms).toBeLessThan(3_000);
  });

  it("gives one attempt at most 10 s, then tries again within the overall deadline", async () => {
    const url = fresh("/hang-once");
    const r = await runPluginStep("http-check", "wait-for-url", { url, timeoutSeconds: 30, intervalSeconds: 0.1 });
    expect(r.code, r.log).toBe(0);
    expect(r.lines).toContainEqual(expect.stringMatching(/^attempt 1: no answer within 10 s \(\d+ ms\)$/));
    expect(r.lines).toContainEqual(expect.stringMatching(/^attempt 2: 200 OK/));
    expect(r.outputs!.attempts).toBe("2");
    const elapsed = Number(r.outputs!.elapsedMs);
    expect(elapsed).toBeGreaterThanOrEqual(9_950);
    expect(elapsed).toBeLessThan(13_000);
  });

  it("names the network error of each attempt (connection refused)", async () => {
    const r = await runPluginStep("http-check", "wait-for-url", { url: `http://127.0.0.1:${await closedPort()}/`, timeoutSeconds: 0.6, intervalSeconds: 0.1 });
    expect(r.code, r.log).toBe(1);
    const attempts = r.lines.filter((l) => l.startsWith("attempt "));
    expect(attempts.length).toBeGreaterThanOrEqual(2);
    for (const a of attempts) expect(a).toMatch(/^attempt \d+: error: .*ECONNREFUSED/);
    expect(r.lines.at(-1)).toMatch(/last: error: .*ECONNREFUSED/);
    expect(r.outputs!.status).toBe("");
  });

  it("does not follow redirects: the 3xx itself is the status checked", async () => {
    const ok = await runPluginStep("http-check", "wait-for-url", { url: fresh("/redirect"), expectStatus: 302 });
    expect(ok.code, ok.log).toBe(0);
    expect(ok.outputs).toMatchObject({ status: "302", attempts: "1" });

    const url = fresh("/redirect");
    const bad = await runPluginStep("http-check", "wait-for-url", { url, timeoutSeconds: 0.3, intervalSeconds: 0.1 });
    expect(bad.code, bad.log).toBe(1);
    expect(bad.lines.at(-1)).toMatch(/last: 302 Found \(expected 200\)$/);
    expect(hits.get("/ok?")).toBeUndefined(); // never went where it pointed
  });

  it("sends user:password from the URL as Basic auth and never prints the password", async () => {
    const r = await runPluginStep("http-check", "wait-for-url", { url: `http://deploy:pa%20ss@127.0.0.1:${new URL(base).port}/auth` });
    expect(r.code, r.log).toBe(0);
    expect(r.log).toContain("http://deploy:***@127.0.0.1");
    expect(r.log).not.toMatch(/pa%20ss|pa ss/);
  });

  it("accepts numbers written as text (as an expression resolves them)", async () => {
    const r = await runPluginStep("http-check", "wait-for-url", { url: fresh("/ok"), expectStatus: "200", timeoutSeconds: "5" });
    expect(r.code, r.log).toBe(0);
  });

  it.each([
    [{ url: "ftp://example.com/" }, /^wait-for-url: url must be http:\/\/ or https:\/\/, not ftp:$/],
    [{ url: "not a url" }, /^wait-for-url: url is not a valid URL: "not a url"$/],
    [{}, /^wait-for-url: url is required$/],
    [{ url: "http://127.0.0.1:9/", timeoutSeconds: "soon" }, /^wait-for-url: timeoutSeconds must be a number ≥ 0\.001, not "soon"$/],
    [{ url: "http://127.0.0.1:9/", expectStatus: 20.5 }, /^wait-for-url: expectStatus must be an integer ≥ 100, not 20\.5$/],
    [{ url: "http://127.0.0.1:9/", intervalSeconds: 0 }, /^wait-for-url: intervalSeconds must be a number ≥ 0\.1, not 0$/],
  ])("refuses invalid inputs with exit 2 before any request: %j", async (inputs, message) => {
    const r = await runPluginStep("http-check", "wait-for-url", inputs);
    expect(r.code, r.log).toBe(2);
    expect(r.lines).toEqual([expect.stringMatching(message)]);
    expect(r.outputs).toBeNull();
  });
});

describe("SIGTERM", () => {
  it("during a request that hangs: exits within 1 s, code 143, outputs written", async () => {
    const url = fresh("/hang");
    const run = startPluginStep("http-check", "wait-for-url", { url, timeoutSeconds: 60 });
    await waitUntil(() => hitsOf(url) === 1, 10_000, "the request to arrive");
    const t0 = performance.now();
    run.stop("SIGTERM");
    const r = await run.done;
    expect(performance.now() - t0).toBeLessThan(1_000);
    expect(r.code, r.log).toBe(143);
    expect(r.lines.at(-1)).toBe("stopped by SIGTERM after 1 attempt");
    expect(r.outputs).toMatchObject({ status: "", attempts: "1" });
  });

  it("during the pause between attempts: exits within 1 s", async () => {
    const url = fresh("/always-503");
    const run = startPluginStep("http-check", "wait-for-url", { url, timeoutSeconds: 60, intervalSeconds: 30 });
    await waitUntil(() => existsSync(run.logFile) && readFileSync(run.logFile, "utf8").includes("attempt 1: 503"), 10_000, "the first attempt");
    const t0 = performance.now();
    run.stop("SIGTERM");
    const r = await run.done;
    expect(performance.now() - t0).toBeLessThan(1_000);
    expect(r.code, r.log).toBe(143);
    expect(r.lines.at(-1)).toBe("stopped by SIGTERM after 1 attempt; last: 503 Service Unavailable (expected 200)");
    expect(r.outputs).toMatchObject({ status: "503", attempts: "1" });
    expect(hitsOf(url)).toBe(1);
  });
});
