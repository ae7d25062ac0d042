// The web page for issue 9, against a real server in headless Chromium: an agent's
// config (concurrency, log level) set from the Edit row shows as desired at once and as
// applied once the agent reports it; Restart reaches the agent's channel as a `restart`
// command; the agents a re-registered name replaced; the registration panel's install
// and register commands; the agent versions panel (signed packages built here with the
// test server's own release key, uploaded from the page, listed, pinned; the server's
// 200/409/422 said in its words); and a viewer token sees none of the admin controls.
// The agents are played by the test (fake-agent.ts).
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { writeTar } from "../../schema/tar.ts";
import { TestServer, waitFor } from "../support/local-server.ts";
import { FakeAgent } from "./fake-agent.ts";
import { signedPackage as signedPackageFor } from "./signed-package.ts";

const CHROMIUM = "/usr/bin/chromium";
const AGENT = "life-a";
const row = (name: string) => `tr[data-agent="${name}"]`;

describe("web page: agent config, restart, versions and installation", () => {
  const server = new TestServer();
  const agent = new FakeAgent(server, AGENT);
  const others: FakeAgent[] = [];
  let browser: Browser | undefined;
  const pageErrors: string[] = [];
  const cspViolations: string[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: the web page cannot be tested (Debian: apt-get install chromium)`);
    const launched = chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-quic"],
    });
    await server.start();
    await agent.register();
    // As a real worker does, the hello says what it applies now (its own defaults).
    await agent.connect([], { concurrency: 2, logLevel: "info" });
    browser = await launched;
  });

  afterAll(async () => {
    const results = await Promise.allSettled([browser?.close(), agent.disconnect(), ...others.map((a) => a.disconnect())]);
    await server.stop();
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  });

  async function open(token = server.adminToken, role = "admin"): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser!.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    page.on("pageerror", (e) => pageErrors.push(e.message));
    page.on("console", (m) => {
      if (/Content.Security.Policy/i.test(m.text())) cspViolations.push(m.text());
    });
    await page.goto(`${server.base}/#token=${encodeURIComponent(token)}`);
    await page.waitForSelector(row(AGENT), { timeout: 15_000 });
    await page.waitForSelector(`body[data-role="${role}"]`, { timeout: 10_000 });
    // The agent's detail (config) has been read: its row no longer changes shape under a click.
    await page.waitForSelector(`${row(AGENT)} td.config[data-pending]`, { timeout: 10_000 });
    return { context, page };
  }
  const text = (page: Page, selector: string) => page.locator(selector).first().innerText();
  const expectClean = () => {
    expect(pageErrors).toEqual([]);
    expect(cspViolations).toEqual([]);
  };
  const waitText = (page: Page, selector: string, re: RegExp, what: string) =>
    waitFor(async () => re.test(await page.locator(selector).first().innerText({ timeout: 1_000 }).catch(() => "")), 15_000, what);
  // One config key as the row shows it: its state and both sides.
  const cfg = async (page: Page, key: string) => {
    const item = page.locator(`${row(AGENT)} td.config [data-cfg="${key}"]`);
    return { state: await item.getAttribute("data-state"), desired: await item.getAttribute("data-desired"), applied: await item.getAttribute("data-applied") };
  };
  const waitCfg = (page: Page, key: string, want: { state: string; desired: string; applied: string }) =>
    waitFor(async () => JSON.stringify(await cfg(page, key).catch(() => null)) === JSON.stringify(want), 15_000, `${key} to show ${JSON.stringify(want)}`);

  const signedPackage = (version: string, note = "") => signedPackageFor(server, version, note);

  it("sets concurrency and log level: desired at once, applied once the agent reports it", async () => {
    const { context, page } = await open();
    try {
      // What the agent said in its hello, no admin having set anything.
      await waitCfg(page, "concurrency", { state: "agent", desired: "", applied: "2" });
      expect(await cfg(page, "logLevel")).toEqual({ state: "agent", desired: "", applied: "info" });
      expect(await text(page, `${row(AGENT)} td.version`)).toBe("fake-1.0");

      await page.click(`${row(AGENT)} .agent-edit-open`);
      const edit = `tr[data-agent-edit="${AGENT}"]`;
      await page.waitForSelector(edit);
      expect(await page.inputValue("#ae-concurrency")).toBe("");
      expect(await page.getAttribute("#ae-concurrency", "placeholder")).toBe("agent's own: 2");
      // Out of range: said before anything is sent.
      await page.fill("#ae-concurrency", "65");
      await page.click(`${edit} .ae-save`);
      await waitText(page, "#ae-message", /^Concurrency: a whole number from 1 to 64\.$/, "the range error");
      expect((await server.api("GET", `/api/v1/agents/${AGENT}`)).json.config.desired).toEqual({});

      await page.fill("#ae-concurrency", "5");
      await page.selectOption("#ae-log-level", "debug");
      await page.fill("#ae-tags", "web, canary");
      await page.click(`${edit} .ae-save`);
      await page.waitForSelector(edit, { state: "detached", timeout: 10_000 });
      // Desired at once, pending until the agent says it applies it.
      await waitCfg(page, "concurrency", { state: "pending", desired: "5", applied: "2" });
      expect(await cfg(page, "logLevel")).toEqual({ state: "pending", desired: "debug", applied: "info" });
      expect(await text(page, `${row(AGENT)} [data-cfg="concurrency"]`)).toBe("concurrency 5 pending (applied: 2)");
      expect(await text(page, "#agents-message")).toBe(`Saved the tags and properties of ${AGENT}, and asked it for concurrency 5, log level debug: pending until the agent says it applies them.`);
      expect(await page.locator(`${row(AGENT)} td.tags .tag`).allInnerTexts()).toEqual(["web", "canary"]);
      const view = (await server.api("GET", `/api/v1/agents/${AGENT}`)).json;
      expect(view.config).toEqual({ desired: { concurrency: 5, logLevel: "debug" }, applied: { concurrency: 2, logLevel: "info" } });
      expect(view.tags).toEqual(["web", "canary"]);

      // The agent gets the whole desired config as a command, applies it and says so.
      const command = await agent.nextConfig();
      expect(command.config).toEqual({ concurrency: 5, logLevel: "debug" });
      // Still pending a poll later: only the agent's report makes it applied.
      await new Promise((r) => setTimeout(r, 2_500));
      expect((await cfg(page, "concurrency")).state).toBe("pending");
      agent.sendStatus(command.config);
      await waitCfg(page, "concurrency", { state: "applied", desired: "5", applied: "5" });
      expect(await cfg(page, "logLevel")).toEqual({ state: "applied", desired: "debug", applied: "debug" });
      expect(await page.getAttribute(`${row(AGENT)} td.config`, "data-pending")).toBe("false");

      // Opening the editor again shows the desired config; a save that changes only the
      // log level sends only that.
      await page.click(`${row(AGENT)} .agent-edit-open`);
      await page.waitForSelector(edit);
      expect(await page.inputValue("#ae-concurrency")).toBe("5");
      expect(await page.inputValue("#ae-log-level")).toBe("debug");
      await page.selectOption("#ae-log-level", "warn");
      await page.click(`${edit} .ae-save`);
      await waitCfg(page, "logLevel", { state: "pending", desired: "warn", applied: "debug" });
      expect((await cfg(page, "concurrency")).state).toBe("applied");
      expect((await agent.nextConfig()).config).toEqual({ concurrency: 5, logLevel: "warn" });
      agent.sendStatus({ concurrency: 5, logLevel: "warn" });
      await waitCfg(page, "logLevel", { state: "applied", desired: "warn", applied: "warn" });
      expectClean();
    } finally {
      await context.close();
    }
  });

  it("restarts an agent after a confirmation, and the agent's channel gets the request", async () => {
    const { context, page } = await open();
    try {
      const box = `${row(AGENT)} .agent-restart`;
      await page.click(`${box} button`);
      expect(await text(page, `${box} .confirm`)).toContain(`Restart ${AGENT}? Its monitor starts a new worker; running steps keep running.`);
      expect(agent.restarts).toEqual([]);
      await page.click(`${box} button.danger`);
      await page.waitForSelector(`${row(AGENT)} td.status .restart-note`, { timeout: 10_000 });
      expect(await text(page, `${row(AGENT)} td.status .restart-note`)).toBe("restart requested");
      expect(await text(page, "#agents-message")).toMatch(new RegExp(`^Restart of ${AGENT} requested: `));
      expect(await page.locator(`${box} .confirm`).count()).toBe(0);
      const restart = await agent.nextRestart();
      expect(restart.type).toBe("restart");
      expectClean();
    } finally {
      await context.close();
    }
  });

  it("shows the agents a re-registered name replaced", async () => {
    const old = new FakeAgent(server, "life-rebuilt");
    await old.register();
    const revoked = await server.api("DELETE", `/api/v1/agents/${old.agentId}`);
    expect(revoked.status, revoked.text).toBe(200);
    const rebuilt = new FakeAgent(server, "life-rebuilt");
    others.push(rebuilt);
    await rebuilt.register(undefined, { replace: true });
    await rebuilt.connect();
    const { context, page } = await open();
    try {
      const note = `${row("life-rebuilt")} details.replaced`;
      await page.waitForSelector(note, { timeout: 15_000 });
      expect(await text(page, `${note} summary`)).toBe("replaces an earlier agent");
      await page.click(`${note} summary`);
      expect(await text(page, `${note} li[data-replaced="${old.agentId}"]`)).toMatch(new RegExp(`^${old.agentId} revoked `));
      // Unfolded, it stays so across polls.
      await new Promise((r) => setTimeout(r, 2_500));
      expect(await page.locator(`${note} li`).isVisible()).toBe(true);
      expect(await page.locator(`${row(AGENT)} details.replaced`).count()).toBe(0);
      expectClean();
    } finally {
      await context.close();
    }
  });

  it("shows the exact install command with the registration token, the name and tags", async () => {
    const { context, page } = await open();
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.base });
    try {
      await page.click("#reg-token-new");
      await page.waitForSelector("#reg-token:not([hidden])", { timeout: 10_000 });
      const token = await text(page, "#reg-token-value");
      expect(token.length).toBeGreaterThan(20);
      expect(await text(page, "#reg-install")).toBe(`curl -fsSL ${server.base}/agent/install.sh | sh -s -- --token ${token} --name NAME`);
      expect(await text(page, "#reg-manual")).toBe(`outpost-agent register --server ${server.base} --token ${token} --name NAME --home /var/lib/outpost-agent`);
      expect(await page.locator("#reg-name-missing").isVisible()).toBe(true);
      // No agent version uploaded yet: install.sh would have nothing to install.
      await page.waitForSelector("#reg-no-version:not([hidden])", { timeout: 10_000 });

      await page.fill("#reg-name", "web-07");
      await page.fill("#reg-tags", " web, eu-west ,");
      expect(await text(page, "#reg-install")).toBe(`curl -fsSL ${server.base}/agent/install.sh | sh -s -- --token ${token} --name web-07 --tags web,eu-west`);
      expect(await text(page, "#reg-manual")).toBe(`outpost-agent register --server ${server.base} --token ${token} --name web-07 --tags web,eu-west --home /var/lib/outpost-agent`);
      expect(await page.locator("#reg-name-missing").isVisible()).toBe(false);
      // Whatever is typed stays a single shell word.
      await page.fill("#reg-name", "a b;$(x)'");
      expect(await text(page, "#reg-install")).toContain(`--name 'a b;$(x)'\\'''`);
      await page.fill("#reg-name", "web-07");

      await page.screenshot({ path: "/tmp/outpost-agents-lifecycle.png", fullPage: true });
      await page.click("#reg-install-copy");
      expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(`curl -fsSL ${server.base}/agent/install.sh | sh -s -- --token ${token} --name web-07 --tags web,eu-west`);

      // The token in the command registers that agent.
      const web07 = new FakeAgent(server, "web-07");
      others.push(web07);
      await web07.register(token);
      await web07.connect();
      await page.waitForSelector(`${row("web-07")}[data-status="online"]`, { timeout: 10_000 });

      // The command's script is there, for anyone (it needs no credential).
      const script = await fetch(`${server.base}/agent/install.sh`);
      expect(script.status).toBe(200);
      expect(await script.text()).toMatch(/^#!\/bin\/sh/);

      await page.click("#reg-token-done");
      expect(await page.locator("#reg-token").isVisible()).toBe(false);
      expect(await page.locator("#reg-install").textContent()).toBe("");
      expectClean();
    } finally {
      await context.close();
    }
  });

  it("uploads agent packages (201, 200, 409, 422 in the server's words), lists them and pins one as current", async () => {
    const { context, page } = await open();
    const message = "#agent-versions-message";
    const upload = async (file: string) => {
      await page.setInputFiles("#agent-version-file", file);
      await page.click("#agent-version-upload-submit");
    };
    try {
      await page.waitForSelector("#agent-versions-empty:not([hidden])", { timeout: 10_000 });

      const v1 = await signedPackage("1.0.0");
      await upload(v1);
      await waitText(page, message, /^Uploaded agent version 1\.0\.0 \(platforms: linux-x64-gnu, linux-x64-musl; sha256 [0-9a-f]{64}\)\.$/, "the 201 message");
      const r1 = 'tr[data-agent-version="1.0.0"]';
      await page.waitForSelector(`${r1}[data-current="true"]`, { timeout: 10_000 });
      const listed = (await server.api("GET", "/api/v1/agent-versions")).json;
      expect(await text(page, `${r1} .sha`)).toBe(`${listed.versions[0].sha256.slice(0, 12)}…`);
      expect(await page.locator(`${r1} .platforms .tag`).allInnerTexts()).toEqual(["linux-x64-gnu", "linux-x64-musl"]);
      expect(await text(page, `${r1} .uploaded`)).toMatch(/^(just now|\d+ s ago)$/);
      expect(await text(page, `${r1} .current-badge`)).toBe("current");
      expect(await text(page, "#agent-version-current")).toBe("install.sh installs 1.0.0 (the newest uploaded).");

      // The same bytes again: 200.
      await upload(v1);
      await waitText(page, message, /^Agent version 1\.0\.0 is already here with exactly these bytes\.$/, "the 200 message");
      // Other bytes under the same version: the server's 409, verbatim.
      await upload(await signedPackage("1.0.0", "-other"));
      await waitText(page, message, /^Cannot upload outpost-agent-1\.0\.0-other\.tar\.gz \(HTTP 409\): agent version 1\.0\.0 already exists with other content/, "the 409 message");
      expect(await page.locator(`${message}.error`).count()).toBe(1);
      // Not signed: the server's 422, verbatim.
      const unsigned = join(server.work, "unsigned.tar.gz");
      writeFileSync(unsigned, gzipSync(writeTar([{ path: "outpost-agent-manifest.json", type: "file", mode: 0o644, data: new TextEncoder().encode("{}") }])));
      await upload(unsigned);
      await waitText(page, message, /^Cannot upload unsigned\.tar\.gz \(HTTP 422\): agent package refused \(unsigned\): /, "the 422 message");
      const refusal = await fetch(`${server.base}/api/v1/agent-versions`, {
        method: "POST", headers: { authorization: `Bearer ${server.adminToken}`, "content-type": "application/gzip" }, body: readFileSync(unsigned),
      });
      expect(refusal.status).toBe(422);
      expect(await text(page, message)).toBe(`Cannot upload unsigned.tar.gz (HTTP 422): ${(await refusal.json()).error}`);
      expect((await server.api("GET", "/api/v1/agent-versions")).json.versions.map((v: any) => v.version)).toEqual(["1.0.0"]);

      // A newer version becomes current by itself; an admin pins the older one.
      await upload(await signedPackage("1.1.0"));
      await waitText(page, message, /^Uploaded agent version 1\.1\.0 /, "the second 201");
      const r2 = 'tr[data-agent-version="1.1.0"]';
      await page.waitForSelector(`${r2}[data-current="true"]`, { timeout: 10_000 });
      expect(await page.locator("#agent-versions tbody tr").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-agent-version")))).toEqual(["1.1.0", "1.0.0"]);
      await page.click(`${r1} .av-pin`);
      await page.waitForSelector(`${r1}[data-current="true"]`, { timeout: 10_000 });
      await waitText(page, message, /^1\.0\.0 is now the current agent version \(pinned\): install\.sh installs it\.$/, "the pin message");
      expect(await text(page, `${r1} .current-badge`)).toBe("current (pinned)");
      expect(await text(page, "#agent-version-current")).toBe("install.sh installs 1.0.0 (pinned by an admin).");
      let versions = (await server.api("GET", "/api/v1/agent-versions")).json;
      expect([versions.current, versions.pinned]).toEqual(["1.0.0", true]);
      // Unpinned, the newest is current again.
      await page.click(`${r1} .av-unpin`);
      await page.waitForSelector(`${r2}[data-current="true"]`, { timeout: 10_000 });
      versions = (await server.api("GET", "/api/v1/agent-versions")).json;
      expect([versions.current, versions.pinned]).toEqual(["1.1.0", false]);

      await page.screenshot({ path: "/tmp/outpost-agent-versions.png", fullPage: true });
      // With a version uploaded, the registration panel no longer warns.
      await page.click("#reg-token-new");
      await page.waitForSelector("#reg-token:not([hidden])", { timeout: 10_000 });
      await waitFor(async () => !(await page.locator("#reg-no-version").isVisible()), 10_000, "the warning to go");
      expectClean();
    } finally {
      await context.close();
    }
  });

  it("shows a viewer token the config and versions, and none of the admin controls", async () => {
    const t = await server.api("POST", "/api/v1/api-tokens", { role: "viewer", name: "life-viewer" });
    expect(t.status, t.text).toBe(201);
    const { context, page } = await open(t.json.token, "viewer");
    try {
      await waitCfg(page, "logLevel", { state: "applied", desired: "warn", applied: "warn" });
      await page.waitForSelector('tr[data-agent-version="1.1.0"]', { timeout: 10_000 });
      for (const sel of ["#reg-token-new", `${row(AGENT)} .agent-edit-open`, `${row(AGENT)} .agent-restart button`, `${row(AGENT)} td.actions button`,
        "#agent-version-upload", "#agent-versions .av-pin", "#agent-versions .av-unpin"]) {
        expect(await page.locator(sel).first().isVisible(), sel).toBe(false);
      }
      expect(await page.locator('tr[data-agent-version="1.0.0"]').isVisible()).toBe(true);
      // An agent whose config is not pending is not read again at every poll.
      const reads: string[] = [];
      page.on("request", (r) => {
        if (new URL(r.url()).pathname === `/api/v1/agents/${agent.agentId}`) reads.push(r.url());
      });
      await new Promise((r) => setTimeout(r, 5_000));
      expect(reads).toEqual([]);
      expectClean();
    } finally {
      await context.close();
    }
  });
});
