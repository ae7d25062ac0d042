// The web page against a real server, in headless Chromium. The test plays the agents
// itself over the agent API (fake-agent.ts), so what the page must show is set up step
// by step: online/offline, a log arriving in pieces, a result delivered late.
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { TestServer, sleep, waitFor } from "../support/local-server.ts";
import { FakeAgent } from "./fake-agent.ts";

const CHROMIUM = "/usr/bin/chromium";
// The page is part of every feature: without Chromium this test fails (whether or not
// CI is set) rather than pass by skipping. `.ci/run` installs it; on a developer
// machine: apt-get install chromium.
const haveChromium = existsSync(CHROMIUM);
const AGENT = "web-agent";
const PAGE_SIZE = 25; // web/deployments.js
const TOKEN_KEY = "outpost.adminToken";
const MiB = 1024 * 1024;

describe("web dashboard", () => {
  const server = new TestServer();
  const agent = new FakeAgent(server, AGENT);
  let browser: Browser | undefined;
  let okId = "";
  let failId = "";
  // Started in beforeAll, finished late by the outage test (its result "arrives later").
  const outage = { id: "", stepId: "", startedAt: 0 };
  const pageErrors: string[] = [];
  const cspViolations: string[] = [];

  const deploy = async (name: string, command = "true", agents = [AGENT]): Promise<string> => {
    const r = await server.api("POST", "/api/v1/deployments", { name, agents, steps: [{ name: name.replace(/^web-/, ""), type: "shell", command }] });
    expect(r.status, r.text).toBe(201);
    return r.json.id;
  };

  beforeAll(async () => {
    if (!haveChromium) throw new Error(`${CHROMIUM} is missing: the web page cannot be tested (Debian: apt-get install chromium)`);
    const launched = chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-quic"],
    });
    await server.start();
    await agent.register();
    await agent.connect();

    okId = await deploy("web-ok", "echo hello-web");
    // The name doubles as an escaping check: it must show as text, never as markup.
    failId = await deploy("web-fail <img src=x>", "echo going-down; exit 3");
    outage.id = await deploy("web-outage", "sleep 600");
    await agent.run(okId, "hello-web\n");
    await agent.run(failId, "going-down\n", { status: "failed", exitCode: 3, reason: "exit code 3" });
    outage.stepId = (await agent.command(outage.id)).steps[0].stepId;
    outage.startedAt = Date.now();
    await agent.started(outage.id, outage.stepId, outage.startedAt);
    browser = await launched;
  });

  afterAll(async () => {
    // Each stop is attempted even if an earlier one fails; the first failure is reported.
    const results = await Promise.allSettled([browser?.close(), agent.disconnect()]);
    await server.stop();
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  });

  async function newPage(context?: BrowserContext): Promise<{ context: BrowserContext; page: Page }> {
    context ??= await browser!.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    page.on("pageerror", (e) => pageErrors.push(e.message));
    page.on("console", (m) => {
      if (/Content.Security.Policy/i.test(m.text())) cspViolations.push(m.text());
    });
    return { context, page };
  }

  const withToken = (token = server.adminToken) => `${server.base}/#token=${encodeURIComponent(token)}`;
  const text = (page: Page, selector: string) => page.locator(selector).first().innerText();
  const storage = (page: Page) =>
    page.evaluate((k) => ({ session: sessionStorage.getItem(k), local: localStorage.getItem(k) }), TOKEN_KEY);
  // No uncaught error and no CSP violation on any page so far.
  const expectClean = () => {
    expect(pageErrors).toEqual([]);
    expect(cspViolations).toEqual([]);
  };

  async function openDeployment(page: Page, id: string) {
    const body = `tbody[data-deployment="${id}"]`;
    await page.click(`${body} button.dep-open`);
    await page.waitForSelector(`${body} tr.step-row`, { timeout: 10_000 });
    return body;
  }

  it("serves the page and its scripts with a strict CSP and nosniff, and breaks none of it", async () => {
    for (const path of ["/", "/app.js", "/log-view.js", "/style.css"]) {
      const r = await fetch(server.base + path);
      expect(r.status, path).toBe(200);
      const csp = r.headers.get("content-security-policy") ?? "";
      expect(csp, path).toContain("script-src 'self'");
      expect(csp, path).toContain("style-src 'self'");
      expect(csp, path).toContain("frame-ancestors 'none'");
      expect(csp, path).not.toContain("unsafe-inline");
      expect(csp, path).not.toContain("unsafe-eval");
      expect(r.headers.get("x-content-type-options"), path).toBe("nosniff");
    }
    expect((await fetch(`${server.base}/app.js`)).headers.get("content-type")).toMatch(/javascript/);

    // The violation detector itself works: inline script and style are refused and reported.
    const { context, page } = await newPage();
    try {
      await page.goto(`${server.base}/`);
      await page.waitForSelector("#login:not([hidden])", { timeout: 10_000 });
      await page.evaluate(() => {
        const s = document.createElement("script");
        s.textContent = "window.inlineRan = true";
        document.body.append(s);
        document.body.setAttribute("style", "color: red");
      });
      await waitFor(async () => cspViolations.length >= 2, 5_000, "the CSP violations to be reported");
      expect(await page.evaluate(() => (window as any).inlineRan)).toBeUndefined();
      cspViolations.length = 0;
    } finally {
      await context.close();
    }
  });

  it("shows agents and deployments with step counts, a deployment's steps and a step's log, with the token from the URL fragment", async () => {
    const { context, page } = await newPage();
    try {
      await page.goto(withToken());
      await page.waitForSelector(`tr[data-agent="${AGENT}"][data-status="online"]`, { timeout: 10_000 });
      expect(await text(page, `tr[data-agent="${AGENT}"] .status`)).toBe("online");
      // The token leaves the address bar (and history), and is kept for this tab only.
      expect(page.url()).toBe(`${server.base}/`);
      expect(await storage(page)).toEqual({ session: server.adminToken, local: null });

      const ok = `tbody[data-deployment="${okId}"]`;
      await page.waitForSelector(`${ok}[data-status="succeeded"]`, { timeout: 10_000 });
      expect(await text(page, `${ok} tr.dep-row td.counts`)).toBe("1 succeeded");
      expect(await text(page, `${ok} tr.dep-row td.agents`)).toBe("1 agent");
      expect(await text(page, `${ok} tr.dep-row td.age`)).toMatch(/^(just now|\d+ s ago)$/);
      expect(await text(page, `${ok} tr.dep-row td.duration`)).toMatch(/^\d+ ms$|^\d+\.\d s$/);
      expect(await page.locator(`${ok} tr.step-row`).count()).toBe(0); // the list has counts, not steps

      const fail = `tbody[data-deployment="${failId}"]`;
      expect(await text(page, `${fail} tr.dep-row .status`)).toBe("failed");
      expect(await text(page, `${fail} tr.dep-row td.counts`)).toBe("1 failed");
      expect(await text(page, `${fail} tr.dep-row td.name`)).toContain("web-fail <img src=x>");
      expect(await page.locator(`${fail} img`).count()).toBe(0);
      // The running one says so in its counts.
      expect(await text(page, `tbody[data-deployment="${outage.id}"] tr.dep-row td.counts`)).toBe("1 running");

      await openDeployment(page, failId);
      expect(await text(page, `${fail} tr.step-row .status`)).toBe("failed");
      expect(await text(page, `${fail} tr.step-row td.exit`)).toBe("3");
      expect(await text(page, `${fail} tr.step-row .reason`)).toBe("exit code 3");
      expect(await text(page, `${fail} tr.step-row td.agent`)).toBe(AGENT);

      // Opening another deployment closes the first.
      await openDeployment(page, okId);
      expect(await page.locator(`${fail} tr.step-row`).count()).toBe(0);
      const okStep = page.locator(`${ok} tr.step-row`);
      expect(await okStep.count()).toBe(1);
      expect(await okStep.getAttribute("data-status")).toBe("succeeded");
      expect(await okStep.locator("td.step-name button").innerText()).toBe("ok");
      expect(await okStep.locator("td.exit").innerText()).toBe("0");
      expect(await okStep.locator("td.started").innerText()).toMatch(/\d+:\d\d:\d\d/);
      expect(await okStep.locator(".reported").count()).toBe(0); // reported at once: no note

      await okStep.locator("td.step-name button").click();
      await page.waitForFunction(() => document.getElementById("log-text")?.textContent === "hello-web\n", null, { timeout: 10_000 });
      expect(await page.locator("#log-panel").isVisible()).toBe(true);
      expect(await text(page, "#log-title")).toContain("ok");
      expect(await text(page, "#log-meta")).toContain("exit 0");

      await page.screenshot({ path: "/tmp/outpost-dashboard.png", fullPage: true });
      expectClean();
    } finally {
      await context.close();
    }
  });

  it("picks up a new deployment without a reload", async () => {
    const { context, page } = await newPage();
    try {
      await page.goto(withToken());
      await page.waitForSelector(`tr[data-agent="${AGENT}"]`, { timeout: 10_000 });
      const id = await deploy("web-live", "echo later");
      await page.waitForSelector(`tbody[data-deployment="${id}"][data-status="queued"], tbody[data-deployment="${id}"][data-status="running"]`, { timeout: 10_000 });
      await agent.run(id, "later\n");
      await page.waitForSelector(`tbody[data-deployment="${id}"][data-status="succeeded"]`, { timeout: 10_000 });
      expectClean();
    } finally {
      await context.close();
    }
  });

  it("fetches only a log's new bytes, decodes a character cut between uploads, and stops once the log is complete", async () => {
    const { context, page } = await newPage();
    const id = await deploy("web-stream", "./stream.sh");
    const stepId = (await agent.command(id)).steps[0].stepId;
    await agent.started(id, stepId);
    const logRequests: URL[] = [];
    const detailRequests: string[] = [];
    page.on("request", (r) => {
      const url = new URL(r.url());
      if (url.pathname.endsWith(`/steps/${stepId}/log`)) logRequests.push(url);
      if (url.pathname === `/api/v1/deployments/${id}`) detailRequests.push(url.pathname);
    });
    const logText = () => page.evaluate(() => document.getElementById("log-text")!.textContent);
    try {
      await page.goto(withToken());
      await page.waitForSelector(`tbody[data-deployment="${id}"]`, { timeout: 10_000 });
      await openDeployment(page, id);
      await page.click(`tr[data-step="${stepId}"] td.step-name button`);
      await page.waitForSelector("#log-panel:not([hidden])");

      // "☃" is three bytes (e2 98 83); the first upload ends after two of them.
      const all = Buffer.from("line one\nsnow ☃ man\nline three ✓\n");
      const cut = all.indexOf(Buffer.from("☃")) + 2;
      await agent.putLog(stepId, 0, all.subarray(0, cut));
      await waitFor(async () => (await logText()) === "line one\nsnow ", 10_000, "the first part of the log");
      await agent.putLog(stepId, cut, all.subarray(cut));
      await waitFor(async () => (await logText()) === all.toString("utf8"), 10_000, "the whole log, decoded");
      expect(await logText()).not.toContain("\uFFFD");
      const offsets = logRequests.map((u) => Number(u.searchParams.get("offset") ?? 0));
      expect(offsets[0]).toBe(0);
      expect(offsets).toContain(cut); // asked only for what came after the first part
      expect(Math.max(...offsets)).toBeLessThanOrEqual(all.length);

      await agent.finished(id, stepId);
      await page.waitForSelector('#log-panel[data-complete="true"]', { timeout: 10_000 });
      await page.waitForSelector(`tbody[data-deployment="${id}"][data-status="succeeded"]`, { timeout: 10_000 });
      // Complete: neither the log nor the ended deployment (after one more read, a poll
      // after it ended) is read again.
      await sleep(2_500);
      const logsBefore = logRequests.length;
      const detailsBefore = detailRequests.length;
      await sleep(4_500);
      expect(logRequests.length).toBe(logsBefore);
      expect(detailRequests.length).toBe(detailsBefore);
      expect(await logText()).toBe(all.toString("utf8"));
      expect(await text(page, "#log-meta")).toContain(`${all.length} B`);
      expectClean();
    } finally {
      await context.close();
    }
  });

  it("reads a log larger than one request (1 MiB) in consecutive ranges", async () => {
    // A four-byte character straddles the 1 MiB boundary, i.e. the end of the first range.
    const emoji = Buffer.from("😀");
    const head = Buffer.concat([Buffer.from(`${"x".repeat(99)}\n`.repeat(10485)), Buffer.from("y".repeat(MiB - 2 - 1048500))]);
    const all = Buffer.concat([head, emoji, Buffer.from(`${"z".repeat(99)}\n`.repeat(2621))]);
    expect(head.length).toBe(MiB - 2);
    const big = await deploy("web-big-log", "./big.sh");
    const cmd = await agent.command(big);
    const bigStep = cmd.steps[0].stepId;
    await agent.started(big, bigStep);
    await agent.putWholeLog(bigStep, all);
    await agent.finished(big, bigStep);

    const { context, page } = await newPage();
    const offsets: number[] = [];
    page.on("request", (r) => {
      const url = new URL(r.url());
      if (url.pathname.endsWith(`/steps/${bigStep}/log`)) offsets.push(Number(url.searchParams.get("offset") ?? 0));
    });
    try {
      await page.goto(withToken());
      await page.waitForSelector(`tbody[data-deployment="${big}"]`, { timeout: 10_000 });
      await openDeployment(page, big);
      await page.click(`tr[data-step="${bigStep}"] td.step-name button`);
      await page.waitForSelector('#log-panel[data-complete="true"]', { timeout: 15_000 });
      expect(offsets).toEqual([0, MiB]);
      const shown = await page.evaluate(() => document.getElementById("log-text")!.textContent!);
      expect(shown.length).toBe(all.toString("utf8").length);
      expect(shown === all.toString("utf8")).toBe(true);
      expect(shown).not.toContain("\uFFFD");
      expect(await page.getAttribute("#log-text", "data-bytes")).toBe(String(all.length));
      expectClean();
    } finally {
      await context.close();
    }
  });

  it("shows the first 4 MiB of a bigger log and says where the rest is", async () => {
    const MiB = 1024 * 1024;
    const all = Buffer.from(`${"y".repeat(1023)}\n`.repeat(5 * 1024)); // 5 MiB
    const big = await deploy("web-huge-log", "./huge.sh");
    const cmd = await agent.command(big);
    const step = cmd.steps[0].stepId;
    await agent.started(big, step);
    await agent.putWholeLog(step, all);
    await agent.finished(big, step);

    const { context, page } = await newPage();
    const offsets: number[] = [];
    page.on("request", (r) => {
      const url = new URL(r.url());
      if (url.pathname.endsWith(`/steps/${step}/log`)) offsets.push(Number(url.searchParams.get("offset") ?? 0));
    });
    try {
      await page.goto(withToken());
      await page.waitForSelector(`tbody[data-deployment="${big}"]`, { timeout: 10_000 });
      await openDeployment(page, big);
      await page.click(`tr[data-step="${step}"] td.step-name button`);
      await page.waitForSelector('#log-panel[data-cut="true"]', { timeout: 15_000 });
      expect(offsets).toEqual([0, MiB, 2 * MiB, 3 * MiB]);
      expect(await page.getAttribute("#log-text", "data-bytes")).toBe(String(4 * MiB));
      expect(await page.getAttribute("#log-panel", "data-complete")).toBe("false");
      expect(await text(page, "#log-meta")).toContain(`the page shows the first`);
      expect(await text(page, "#log-meta")).toContain(`/log?offset=${4 * MiB}`);
      expectClean();
    } finally {
      await context.close();
    }
  });

  it("keeps the token for the tab only, unless asked to remember it on this device", async () => {
    const { context, page } = await newPage();
    const apiCalls: string[] = [];
    page.on("request", (r) => {
      if (new URL(r.url()).pathname.startsWith("/api/")) apiCalls.push(r.url());
    });
    try {
      await page.goto(withToken("wrong-token"));
      await page.waitForSelector("#login:not([hidden])", { timeout: 10_000 });
      expect(await page.locator("#dashboard").isVisible()).toBe(false);
      expect(await text(page, "#login-message")).toContain("401");
      // A wrong token costs one failed attempt (they are limited per address), not one per panel.
      expect(apiCalls).toEqual([`${server.base}/api/v1/agents`]);
      // A refused token is not kept for the next visit.
      expect(await storage(page)).toEqual({ session: null, local: null });

      // Not remembered: this tab keeps it (a reload stays signed in), a new tab does not have it.
      await page.fill("#token-input", server.adminToken);
      await page.click("#login-form button[type=submit]");
      await page.waitForSelector(`tr[data-agent="${AGENT}"]`, { timeout: 10_000 });
      expect(await storage(page)).toEqual({ session: server.adminToken, local: null });
      await page.reload();
      await page.waitForSelector(`tr[data-agent="${AGENT}"]`, { timeout: 10_000 });
      const other = (await newPage(context)).page;
      await other.goto(`${server.base}/`);
      await other.waitForSelector("#login:not([hidden])", { timeout: 10_000 });
      expect(await other.locator("#login-message").isVisible()).toBe(false);
      await other.close();

      // "Forget token" clears it.
      await page.click("#signout");
      await page.waitForSelector("#login:not([hidden])");
      expect(await storage(page)).toEqual({ session: null, local: null });

      // Remembered: in localStorage, so a new tab opens the dashboard straight away.
      await page.fill("#token-input", server.adminToken);
      await page.check("#remember");
      await page.click("#login-form button[type=submit]");
      await page.waitForSelector(`tr[data-agent="${AGENT}"]`, { timeout: 10_000 });
      expect(await storage(page)).toEqual({ session: null, local: server.adminToken });
      const again = (await newPage(context)).page;
      await again.goto(`${server.base}/`);
      await again.waitForSelector(`tr[data-agent="${AGENT}"]`, { timeout: 10_000 });
      expect(await again.locator("#login").isVisible()).toBe(false);

      await again.click("#signout");
      await again.waitForSelector("#login:not([hidden])");
      expect(await storage(again)).toEqual({ session: null, local: null });
      expectClean();
    } finally {
      await context.close();
    }
  });

  it("creates an API token (shown once), lists and revokes it; a viewer token sees no API tokens panel and its admin actions are refused", async () => {
    const admin = await newPage();
    await admin.context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.base });
    const viewerToken = await server.api("POST", "/api/v1/api-tokens", { role: "viewer", name: "web-viewer" });
    expect(viewerToken.status, viewerToken.text).toBe(201);
    const viewer = await newPage();
    try {
      const page = admin.page;
      await page.goto(withToken());
      await page.waitForSelector("#tokens-panel:not([hidden])", { timeout: 10_000 });
      expect(await text(page, "#role")).toBe("admin");
      expect(await page.locator('tr[data-token-name="web-viewer"]').count()).toBe(1);

      await page.fill("#token-name", "ci-bot");
      await page.selectOption("#token-role", "viewer");
      await page.click("#token-form button[type=submit]");
      await page.waitForSelector("#new-token:not([hidden])", { timeout: 10_000 });
      const secret = await text(page, "#new-token-value");
      expect(secret).toMatch(/^opt_/);
      expect(await text(page, "#new-token")).toMatch(/shown only once/);
      await page.click("#new-token-copy");
      expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(secret);
      const row = 'tr[data-token-name="ci-bot"]';
      await page.waitForSelector(row);
      expect(await text(page, `${row} .role-cell`)).toBe("viewer");
      // The token shown is the one created: it reads, and may not administer.
      const asBot = (path: string) => fetch(server.base + path, { headers: { authorization: `Bearer ${secret}` } });
      expect((await asBot("/api/v1/agents")).status).toBe(200);
      expect((await asBot("/api/v1/api-tokens")).status).toBe(403);
      // Once dismissed, the secret is gone from the page.
      await page.click("#new-token-done");
      expect(await page.locator("#new-token").isVisible()).toBe(false);
      expect(await page.locator("#new-token-value").textContent()).toBe("");

      // The viewer: no API tokens panel; admin actions answer with the server's refusal.
      const v = viewer.page;
      await v.goto(withToken(viewerToken.json.token));
      await v.waitForSelector('body[data-role="viewer"]', { timeout: 10_000 });
      await v.waitForSelector(`tr[data-agent="${AGENT}"]`, { timeout: 10_000 });
      expect(await v.locator("#tokens-panel").isVisible()).toBe(false);
      expect(await text(v, "#role")).toBe("read-only");
      // The admin controls are not shown to a viewer; used anyway (clicked from a
      // script), the server refuses them and the page says so.
      expect(await v.locator("#reg-token-new").isVisible()).toBe(false);
      expect(await v.locator(`tr[data-agent="${AGENT}"] td.actions button`).isVisible()).toBe(false);
      const clickHidden = (selector: string) => v.evaluate((sel) => (document.querySelector(sel) as HTMLElement).click(), selector);
      await clickHidden("#reg-token-new");
      await v.waitForSelector("#agents-message.error", { timeout: 10_000 });
      expect(await text(v, "#agents-message")).toContain("this API token may only read");
      expect(await v.locator("#reg-token").isVisible()).toBe(false);
      await clickHidden(`tr[data-agent="${AGENT}"] td.actions button`);
      await clickHidden(`tr[data-agent="${AGENT}"] td.actions button.danger`);
      await waitFor(async () => (await text(v, "#agents-message")).includes(`Cannot revoke ${AGENT}`), 10_000, "the refusal");
      expect(await text(v, "#agents-message")).toContain("this API token may only read");
      expect(await v.locator(`tr[data-agent="${AGENT}"]`).count()).toBe(1);

      // Revoke ci-bot: one click asks, the second revokes.
      await page.click(`${row} td.actions button`);
      expect(await text(page, `${row} .confirm`)).toContain("Revoke “ci-bot”?");
      expect(await page.locator(row).count()).toBe(1);
      await page.click(`${row} td.actions button.danger`);
      await page.waitForSelector(row, { state: "detached", timeout: 10_000 });
      expect((await asBot("/api/v1/agents")).status).toBe(401);
      const listed = await server.api("GET", "/api/v1/api-tokens");
      expect(listed.json.tokens.map((t: any) => t.name)).toEqual(["web-viewer"]);
      expectClean();
    } finally {
      await Promise.all([admin.context.close(), viewer.context.close()]);
    }
  });

  it("creates a registration token for a new agent and revokes an agent", async () => {
    const { context, page } = await newPage();
    const doomed = new FakeAgent(server, "doomed-agent");
    try {
      await page.goto(withToken());
      await page.waitForSelector(`tr[data-agent="${AGENT}"]`, { timeout: 10_000 });
      await page.click("#reg-token-new");
      await page.waitForSelector("#reg-token:not([hidden])", { timeout: 10_000 });
      const token = await text(page, "#reg-token-value");
      expect(await text(page, "#reg-install")).toBe(`curl -fsSL ${server.base}/agent/install.sh | sh -s -- --token ${token} --name NAME`);
      expect(await text(page, "#reg-manual")).toContain(`outpost-agent register --server ${server.base} --token ${token} --name NAME`);
      expect(await text(page, "#reg-token")).toMatch(/single use.*shown only once/is);

      // The token shown registers an agent, which the page then lists.
      await doomed.register(token);
      await doomed.connect();
      const row = `tr[data-agent="doomed-agent"]`;
      await page.waitForSelector(`${row}[data-status="online"]`, { timeout: 10_000 });

      await page.click(`${row} td.actions button`);
      expect(await text(page, `${row} .confirm`)).toContain("Revoke doomed-agent?");
      await page.click(`${row} td.actions button.danger`);
      await page.waitForSelector(row, { state: "detached", timeout: 10_000 });
      expect(await text(page, "#agents-message")).toContain("doomed-agent is revoked");
      // Revoked for real: its channel is closed as revoked, and the API lists it no more.
      expect(await doomed.closeCode).toBe(4003);
      const agents = await server.api("GET", "/api/v1/agents");
      expect(agents.json.agents.map((a: any) => a.name)).toEqual([AGENT]);
      // And a poll later it stays gone; the other agent is untouched.
      await sleep(2_500);
      expect(await page.locator(row).count()).toBe(0);
      expect(await page.locator(`tr[data-agent="${AGENT}"]`).count()).toBe(1);
      expectClean();
    } finally {
      await doomed.disconnect();
      await context.close();
    }
  });

  it("deploys from the page", async () => {
    const { context, page } = await newPage();
    try {
      await page.goto(withToken());
      await page.waitForSelector(`tr[data-agent="${AGENT}"]`, { timeout: 10_000 });
      await page.click("#new-deployment-open");
      await page.fill("#nd-name", "web-from-page");
      await page.check(`#nd-agent-list input[value="${AGENT}"]`);
      await page.fill("#nd-steps li:first-child .nd-step-name", "hello");
      await page.fill("#nd-steps li:first-child .nd-step-command", "echo from-the-page");
      await page.click("#nd-submit");
      await page.waitForSelector("#new-deployment", { state: "hidden", timeout: 10_000 });

      const list = await server.api("GET", "/api/v1/deployments?limit=1");
      const created = list.json.deployments[0];
      expect(created.name).toBe("web-from-page");
      const cmd = await agent.command(created.id);
      expect(cmd.steps.map((s) => [s.name, s.command])).toEqual([["hello", "echo from-the-page"]]);
      // The new deployment is opened, its step shown, then its result.
      const body = `tbody[data-deployment="${created.id}"]`;
      await page.waitForSelector(`${body} tr.step-row`, { timeout: 10_000 });
      await agent.started(created.id, cmd.steps[0].stepId);
      await agent.finished(created.id, cmd.steps[0].stepId);
      await page.waitForSelector(`${body}[data-status="succeeded"] tr.step-row[data-status="succeeded"]`, { timeout: 10_000 });

      // Nothing chosen: the form says so before asking the server.
      await page.click("#new-deployment-open");
      await page.fill("#nd-steps li:first-child .nd-step-command", "true");
      await page.click("#nd-submit");
      expect(await text(page, "#nd-message")).toContain("Choose at least one agent");
      // Refused by the server (a command over 64 KiB): its reason is shown, the form stays.
      await page.check(`#nd-agent-list input[value="${AGENT}"]`);
      await page.fill("#nd-steps li:first-child .nd-step-command", "x".repeat(70_000));
      await page.click("#nd-submit");
      await waitFor(async () => (await text(page, "#nd-message")).startsWith("Cannot deploy: "), 10_000, "the server's refusal");
      expect((await text(page, "#nd-message")).length).toBeGreaterThan("Cannot deploy: ".length + 5);
      expect(await page.locator("#new-deployment").isVisible()).toBe(true);
      expectClean();
    } finally {
      await context.close();
    }
  });

  // docs/protocol.md §Outages: the deployment shows the agent offline and the step still
  // running; the result produced meanwhile is delivered when the agent is back.
  it("marks a running step whose agent went offline, and shows its late result once the agent is back", async () => {
    const { context, page } = await newPage();
    try {
      await page.goto(withToken());
      await page.waitForSelector(`tbody[data-deployment="${outage.id}"]`, { timeout: 10_000 });
      const body = await openDeployment(page, outage.id);
      const stepRow = `${body} tr.step-row`;
      await page.waitForSelector(`${stepRow}[data-status="running"]`, { timeout: 10_000 });
      expect(await page.locator(`${stepRow} .agent-offline`).count()).toBe(0);

      await agent.disconnect(); // the step itself runs on, as a real one would
      await page.waitForSelector(`tr[data-agent="${AGENT}"][data-status="offline"]`, { timeout: 15_000 });
      await page.waitForSelector(`${stepRow}[data-status="running"] .agent-offline`, { timeout: 5_000 });

      // It finished half a second after it started; the agent says so only now.
      const finishedAt = outage.startedAt + 500;
      await sleep(Math.max(0, finishedAt + 12_000 - Date.now()));
      await agent.connect([outage.stepId]);
      await agent.finished(outage.id, outage.stepId, { at: finishedAt });
      await page.waitForSelector(`${stepRow}[data-status="succeeded"]`, { timeout: 10_000 });
      expect(await page.locator(`${stepRow} .agent-offline`).count()).toBe(0);
      expect(await text(page, `${stepRow} .reported`)).toMatch(/^reported \d+ (s|min) later$/);
      expect(await text(page, `${stepRow} td.duration`)).toMatch(/^(4\d\d|5\d\d) ms\n/); // the work's own times
      expectClean();
    } finally {
      await context.close();
    }
  });

  it("pages through deployments with \"Older deployments\", and polls only the first page", async () => {
    const bulk = await new FakeAgent(server, "bulk-agent").register();
    for (let i = 0; i < PAGE_SIZE + 1; i += 9) {
      await Promise.all(Array.from({ length: Math.min(9, PAGE_SIZE + 1 - i) }, (_, j) => deploy(`web-bulk-${i + j}`, "true", ["bulk-agent"])));
    }
    const total = await countDeployments();
    expect(total).toBeGreaterThan(PAGE_SIZE);
    const { context, page } = await newPage();
    const listRequests: URL[] = [];
    page.on("request", (r) => {
      const url = new URL(r.url());
      if (url.pathname === "/api/v1/deployments") listRequests.push(url);
    });
    try {
      await page.goto(withToken());
      await page.waitForSelector("tbody[data-deployment]", { timeout: 10_000 });
      const rows = () => page.locator("tbody[data-deployment]").count();
      expect(await rows()).toBe(PAGE_SIZE);
      expect(await page.locator(`tbody[data-deployment="${okId}"]`).count()).toBe(0); // the oldest is not on the first page
      expect(await page.locator("#older").isVisible()).toBe(true);

      await page.click("#older");
      await page.waitForSelector(`tbody[data-deployment="${okId}"]`, { timeout: 10_000 });
      expect(await rows()).toBe(total);
      expect(await page.locator("#older").isVisible()).toBe(false); // no more pages
      // Newest first, as the server lists them.
      const shown = await page.locator("tbody[data-deployment]").evaluateAll((els) => els.map((e) => e.getAttribute("data-deployment")));
      expect(shown).toEqual(await allDeploymentIds());

      // Polling goes on with the first page only.
      await sleep(4_500);
      const older = listRequests.filter((u) => u.searchParams.has("before"));
      expect(older.length).toBe(1);
      expect(listRequests.length).toBeGreaterThanOrEqual(3);
      for (const u of listRequests) expect(Number(u.searchParams.get("limit"))).toBe(PAGE_SIZE);
      expect(await rows()).toBe(total);
      expectClean();
    } finally {
      await context.close();
    }
  });

  async function allDeploymentIds(): Promise<string[]> {
    const ids: string[] = [];
    let before: string | null = null;
    do {
      const r = await server.api("GET", `/api/v1/deployments?limit=100${before ? `&before=${encodeURIComponent(before)}` : ""}`);
      ids.push(...r.json.deployments.map((d: any) => d.id));
      before = r.json.next;
    } while (before);
    return ids;
  }
  const countDeployments = async () => (await allDeploymentIds()).length;

  it("shows the form without a message when no token is known", async () => {
    const { context, page } = await newPage();
    try {
      await page.goto(`${server.base}/`);
      await page.waitForSelector("#login:not([hidden])", { timeout: 10_000 });
      expect(await page.locator("#login-message").isVisible()).toBe(false);
      expect(await page.locator("#dashboard").isVisible()).toBe(false);
      expectClean();
    } finally {
      await context.close();
    }
  });

  // Last: from here on this address's failed attempts are refused for a minute.
  it("says to wait after repeated failed sign-ins from this address (429), and still takes a valid token", async () => {
    let status = 0;
    for (let i = 0; i < 30 && status !== 429; i++) {
      status = (await fetch(`${server.base}/api/v1/agents`, { headers: { authorization: "Bearer not-a-token" } })).status;
    }
    expect(status).toBe(429);
    const { context, page } = await newPage();
    try {
      await page.goto(withToken("still-not-a-token"));
      await page.waitForSelector("#login:not([hidden])", { timeout: 10_000 });
      expect(await text(page, "#login-message")).toMatch(/Too many failed sign-ins .*429.*Try again in \d+ s/);
      expect(await storage(page)).toEqual({ session: null, local: null });
      await page.fill("#token-input", server.adminToken);
      await page.click("#login-form button[type=submit]");
      await page.waitForSelector(`tr[data-agent="${AGENT}"]`, { timeout: 10_000 });
      expectClean();
    } finally {
      await context.close();
    }
  });
});
