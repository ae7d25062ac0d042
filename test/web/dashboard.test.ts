// The web page against a real server and a real agent, in headless Chromium.
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { TestServer, type Proc } from "../support/local-server.ts";

const CHROMIUM = "/usr/bin/chromium";
const haveChromium = existsSync(CHROMIUM);
// On a developer machine without Chromium the page test is skipped; in CI a
// missing browser must fail loudly rather than pass by skipping.
const skip = !haveChromium && !process.env.CI;
const AGENT = "web-agent";

describe.skipIf(skip)("web dashboard", () => {
  const server = new TestServer();
  let agent: Proc | undefined;
  let home = "";
  let browser: Browser | undefined;
  let okId = "";
  let failId = "";
  const pageErrors: string[] = [];

  beforeAll(async () => {
    if (!haveChromium) throw new Error(`${CHROMIUM} is missing (CI is set, so this fails instead of skipping)`);
    await server.start();
    home = await server.registerAgent(AGENT);
    agent = server.startAgent(AGENT, home);
    await server.waitAgentOnline(AGENT);

    const ok = await server.api("POST", "/api/v1/deployments", {
      name: "web-ok", agents: [AGENT], steps: [{ name: "say", type: "shell", command: "echo hello-web" }],
    });
    expect(ok.status, ok.text).toBe(201);
    okId = ok.json.id;
    // The name doubles as an escaping check: it must show as text, never as markup.
    const fail = await server.api("POST", "/api/v1/deployments", {
      name: "web-fail <img src=x>", agents: [AGENT], steps: [{ name: "boom", type: "shell", command: "echo going-down; exit 3" }],
    });
    expect(fail.status, fail.text).toBe(201);
    failId = fail.json.id;
    expect((await server.waitDeployment(okId)).status).toBe("succeeded");
    expect((await server.waitDeployment(failId)).status).toBe("failed");

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-quic"],
    });
  });

  afterAll(async () => {
    // Each stop is attempted even if an earlier one fails; the first failure is reported.
    const results = await Promise.allSettled([browser?.close(), agent?.stop()]);
    await server.stop();
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  });

  async function newPage(): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser!.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    page.on("pageerror", (e) => pageErrors.push(e.message));
    return { context, page };
  }

  const text = (page: Page, selector: string) => page.locator(selector).first().innerText();

  it("shows the agent, both deployments and a step's log, with the token from the URL fragment", async () => {
    const { context, page } = await newPage();
    try {
      await page.goto(`${server.base}/#token=${encodeURIComponent(server.adminToken)}`);

      await page.waitForSelector(`tr[data-agent="${AGENT}"][data-status="online"]`, { timeout: 10_000 });
      expect(await text(page, `tr[data-agent="${AGENT}"] .status`)).toBe("online");
      // The token leaves the address bar (and history) once it is stored.
      expect(page.url()).toBe(`${server.base}/`);
      expect(await page.evaluate(() => localStorage.getItem("outpost.adminToken"))).toBe(server.adminToken);

      const ok = `tbody[data-deployment="${okId}"]`;
      await page.waitForSelector(`${ok}[data-status="succeeded"]`, { timeout: 10_000 });
      const okStep = page.locator(`${ok} tr.step-row`);
      expect(await okStep.count()).toBe(1);
      expect(await okStep.getAttribute("data-status")).toBe("succeeded");
      expect(await okStep.locator("td.step-name button").innerText()).toBe("say");
      expect(await okStep.locator("td.exit").innerText()).toBe("0");

      const fail = `tbody[data-deployment="${failId}"]`;
      await page.waitForSelector(`${fail}[data-status="failed"]`, { timeout: 10_000 });
      expect(await text(page, `${fail} tr.dep-row .status`)).toBe("failed");
      expect(await text(page, `${fail} tr.step-row .status`)).toBe("failed");
      expect(await text(page, `${fail} tr.step-row td.exit`)).toBe("3");
      expect(await text(page, `${fail} tr.dep-row td.name`)).toContain("web-fail <img src=x>");
      expect(await page.locator(`${fail} img`).count()).toBe(0);

      await okStep.locator("td.step-name button").click();
      await page.waitForFunction(() => document.getElementById("log-text")?.textContent?.includes("hello-web"), null, { timeout: 10_000 });
      expect(await page.locator("#log-panel").isVisible()).toBe(true);
      expect(await text(page, "#log-title")).toContain("say");

      await page.screenshot({ path: "/tmp/outpost-dashboard.png", fullPage: true });
      expect(pageErrors).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it("picks up a new deployment without a reload", async () => {
    const { context, page } = await newPage();
    try {
      await page.goto(`${server.base}/#token=${encodeURIComponent(server.adminToken)}`);
      await page.waitForSelector(`tr[data-agent="${AGENT}"]`, { timeout: 10_000 });
      const r = await server.api("POST", "/api/v1/deployments", {
        name: "web-live", agents: [AGENT], steps: [{ name: "later", type: "shell", command: "echo later" }],
      });
      expect(r.status, r.text).toBe(201);
      await page.waitForSelector(`tbody[data-deployment="${r.json.id}"][data-status="succeeded"]`, { timeout: 20_000 });
      expect(pageErrors).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it("shows the token form with a message for a wrong token, and accepts a right one", async () => {
    const { context, page } = await newPage();
    try {
      await page.goto(`${server.base}/#token=wrong-token`);
      await page.waitForSelector("#login:not([hidden])", { timeout: 10_000 });
      expect(await page.locator("#dashboard").isVisible()).toBe(false);
      expect(await text(page, "#login-message")).toContain("401");
      // A refused token is not kept for the next visit.
      expect(await page.evaluate(() => localStorage.getItem("outpost.adminToken"))).toBeNull();

      await page.fill("#token-input", server.adminToken);
      await page.click("#login-form button[type=submit]");
      await page.waitForSelector(`tr[data-agent="${AGENT}"][data-status="online"]`, { timeout: 10_000 });
      expect(await page.locator("#login").isVisible()).toBe(false);

      // The token is remembered: a plain visit to / goes straight to the dashboard.
      await page.goto(`${server.base}/`);
      await page.waitForSelector(`tr[data-agent="${AGENT}"]`, { timeout: 10_000 });
      expect(await page.locator("#login").isVisible()).toBe(false);
      expect(pageErrors).toEqual([]);
    } finally {
      await context.close();
    }
  });

  // docs/protocol.md §Outages: the deployment shows the agent offline and the step still running.
  it("marks a running step whose agent went offline, and shows its result once the agent is back", async () => {
    const { context, page } = await newPage();
    try {
      const slow = await server.api("POST", "/api/v1/deployments", {
        name: "web-outage", agents: [AGENT], steps: [{ name: "slow", type: "shell", command: "sleep 4; echo came-back" }],
      });
      expect(slow.status, slow.text).toBe(201);
      await page.goto(`${server.base}/#token=${encodeURIComponent(server.adminToken)}`);
      const stepRow = `tbody[data-deployment="${slow.json.id}"] tr.step-row`;
      await page.waitForSelector(`${stepRow}[data-status="running"]`, { timeout: 15_000 });
      expect(await page.locator(`${stepRow} .agent-offline`).count()).toBe(0);

      await agent!.stop(); // the step itself runs on, detached from the agent
      await page.waitForSelector(`tr[data-agent="${AGENT}"][data-status="offline"]`, { timeout: 15_000 });
      await page.waitForSelector(`${stepRow}[data-status="running"] .agent-offline`, { timeout: 5_000 });

      agent = server.startAgent(AGENT, home);
      await page.waitForSelector(`${stepRow}[data-status="succeeded"]`, { timeout: 30_000 });
      expect(await page.locator(`${stepRow} .agent-offline`).count()).toBe(0);
      expect(pageErrors).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it("shows the form without a message when no token is known", async () => {
    const { context, page } = await newPage();
    try {
      await page.goto(`${server.base}/`);
      await page.waitForSelector("#login:not([hidden])", { timeout: 10_000 });
      expect(await page.locator("#login-message").isVisible()).toBe(false);
      expect(await page.locator("#dashboard").isVisible()).toBe(false);
    } finally {
      await context.close();
    }
  });
});
