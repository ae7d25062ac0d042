// The web page for agent upgrades (docs/agent-lifecycle.md §Upgrade, §Upgrading many
// agents), against a real server in headless Chromium: a signed version uploaded from
// the page; one agent upgraded from its row (its channel gets the `upgrade` command, the
// row shows `pending` at once and then the states the agent reports); tagged agents
// upgraded in waves of one from the Agent versions panel, the rollout listed wave by
// wave and `stopped` once the first agent reports `rolled-back`; the server's refusals
// said in its words; and a viewer sees the states and rollouts but no admin control.
// The agents are played by the test (fake-agent.ts).
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { TestServer, waitFor } from "../support/local-server.ts";
import { FakeAgent } from "./fake-agent.ts";
import { signedPackage } from "./signed-package.ts";

const CHROMIUM = "/usr/bin/chromium";
const VERSION = "1.1.0";
const ROLLBACK = "the new worker exited (code 3) before it was healthy";
const row = (name: string) => `tr[data-agent="${name}"]`;

describe("web page: agent upgrades, one agent and many in waves", () => {
  const server = new TestServer();
  const one = new FakeAgent(server, "up-a");
  const fleet = [new FakeAgent(server, "up-b1"), new FakeAgent(server, "up-b2")];
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
    for (const a of [one, ...fleet]) {
      await a.register();
      await a.connect();
    }
    for (const a of fleet) {
      const r = await server.api("PATCH", `/api/v1/agents/${a.agentId}`, { tags: ["fleet"] });
      expect(r.status, r.text).toBe(200);
    }
    browser = await launched;
  });

  afterAll(async () => {
    const results = await Promise.allSettled([browser?.close(), ...[one, ...fleet].map((a) => a.disconnect())]);
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
    await page.waitForSelector(row(one.name), { timeout: 15_000 });
    await page.waitForSelector(`body[data-role="${role}"]`, { timeout: 10_000 });
    await page.waitForSelector(`${row(one.name)} td.config[data-pending]`, { timeout: 10_000 });
    return { context, page };
  }
  const text = (page: Page, selector: string) => page.locator(selector).first().innerText();
  const expectClean = () => {
    expect(pageErrors).toEqual([]);
    expect(cspViolations).toEqual([]);
  };
  const waitText = (page: Page, selector: string, re: RegExp, what: string) =>
    waitFor(async () => re.test(await page.locator(selector).first().innerText({ timeout: 1_000 }).catch(() => "")), 15_000, what);
  const upgradeOf = async (a: FakeAgent) => (await server.api("GET", `/api/v1/agents/${a.agentId}`)).json.upgrade;

  it("upgrades one agent from its row: pending at once, then the states the agent reports", async () => {
    const { context, page } = await open();
    try {
      // No version uploaded yet: nothing to upgrade to.
      expect(await page.locator(`${row(one.name)} .agent-upgrade-open`).isDisabled()).toBe(true);
      await page.setInputFiles("#agent-version-file", await signedPackage(server, VERSION));
      await page.click("#agent-version-upload-submit");
      await waitText(page, "#agent-versions-message", new RegExp(`^Uploaded agent version ${VERSION.replaceAll(".", "\\.")} `), "the upload");
      const sha256 = (await server.api("GET", "/api/v1/agent-versions")).json.versions[0].sha256;

      const button = `${row(one.name)} .agent-upgrade-open:not([disabled])`;
      await page.waitForSelector(button, { timeout: 10_000 });
      await page.click(button);
      const ask = `${row(one.name)} .agent-upgrade.confirm`;
      await page.waitForSelector(ask);
      expect(await text(page, ask)).toContain(`Upgrade ${one.name} (runs fake-1.0) to`);
      expect(await page.locator(`${ask} .au-version option`).allInnerTexts()).toEqual([VERSION]);
      expect(await page.inputValue(`${ask} .au-version`)).toBe(VERSION);
      // A poll leaves the open choice alone (the same element, a poll later).
      await page.locator(`${ask} .au-version`).evaluate((s) => { (s as HTMLElement).dataset.mark = "kept"; });
      await new Promise((r) => setTimeout(r, 2_500));
      expect(await page.getAttribute(`${ask} .au-version`, "data-mark")).toBe("kept");
      expect(one.upgrades).toEqual([]);
      await page.click(`${ask} .au-confirm`);

      // Pending at once, from the server's answer.
      const note = `${row(one.name)} td.version .upgrade`;
      await page.waitForSelector(`${note}[data-state="pending"][data-version="${VERSION}"]`, { timeout: 10_000 });
      expect(await text(page, "#agents-message")).toMatch(new RegExp(`^Upgrade of ${one.name} to ${VERSION.replaceAll(".", "\\.")} requested: `));
      expect(await page.locator(ask).count()).toBe(0);
      expect((await upgradeOf(one)).state).toBe("pending");

      // The agent's channel got the command; the page follows what the agent reports.
      const command = await one.nextUpgrade();
      expect([command.type, command.version, command.sha256]).toEqual(["upgrade", VERSION, sha256]);
      one.sendUpgrade({ version: VERSION, state: "downloading", reason: null });
      await page.waitForSelector(`${note}[data-state="downloading"]`, { timeout: 15_000 });
      one.sendUpgrade({ version: VERSION, state: "succeeded", reason: null });
      await page.waitForSelector(`${note}[data-state="succeeded"]`, { timeout: 15_000 });
      expect(await text(page, note)).toMatch(/^→ 1\.1\.0 succeeded (just now|\d+ s ago)$/);
      expect(await page.locator(`${note} .u-reason`).count()).toBe(0);
      expect((await upgradeOf(one)).state).toBe("succeeded");
      expectClean();
    } finally {
      await context.close();
    }
  });

  it("upgrades tagged agents in waves of one; a rollback stops the rollout; refusals in the server's words", async () => {
    const { context, page } = await open();
    const message = "#upgrade-message";
    try {
      await page.waitForSelector("#upgrade-rollouts-empty:not([hidden])", { timeout: 10_000 });
      // The uploaded version is filled in.
      await waitFor(async () => (await page.inputValue("#up-version")) === VERSION, 10_000, "the version to be filled in");
      await page.check("#up-by-tags");
      await page.fill("#up-targets", "fleet");
      expect(await text(page, "#up-target-matches")).toBe("2 agents: up-b1, up-b2");
      await page.fill("#up-batch", "1");

      // A version never uploaded: the server's 404, verbatim.
      await page.fill("#up-version", "9.9.9");
      await page.click("#upgrade-submit");
      const refused = await server.api("POST", "/api/v1/agents/upgrade", { version: "9.9.9", tags: ["fleet"], batchSize: 1 });
      expect(refused.status).toBe(404);
      await waitText(page, message, /^Cannot start the upgrade \(HTTP 404\): /, "the 404 message");
      expect(await text(page, message)).toBe(`Cannot start the upgrade (HTTP 404): ${refused.json.error}`);
      expect(await page.locator(`${message}.error`).count()).toBe(1);
      // An unknown agent: the server's 422.
      await page.fill("#up-version", VERSION);
      await page.check("#up-by-names");
      await page.fill("#up-targets", "up-b1, nope");
      expect(await text(page, "#up-target-matches")).toBe("not an agent: nope");
      await page.click("#upgrade-submit");
      await waitText(page, message, /^Cannot start the upgrade \(HTTP 422\): unknown agent: nope$/, "the 422 message");
      expect((await server.api("GET", "/api/v1/agents/upgrade")).json.rollouts).toEqual([]);

      await page.check("#up-by-tags");
      await page.fill("#up-targets", "fleet");
      await page.click("#upgrade-submit");
      await waitText(page, message, /^Upgrade to 1\.1\.0 started: 2 agents in 2 waves \(up-b1 \| up-b2\)\.$/, "the 202 message");
      const rollout = (await server.api("GET", "/api/v1/agents/upgrade")).json.rollouts[0];
      expect([rollout.state, rollout.currentWave, rollout.waves]).toEqual(["running", 1, [[fleet[0].agentId], [fleet[1].agentId]]]);

      const r = `#upgrade-rollouts tr[data-rollout="${rollout.id}"]`;
      await page.waitForSelector(`${r}[data-state="running"]`, { timeout: 10_000 });
      expect(await text(page, `${r} td.name`)).toBe(VERSION);
      expect(await text(page, `${r} .up-progress`)).toBe("wave 1 of 2");
      expect(await page.locator(`${r} .up-wave`).evaluateAll((li) => li.map((w) => [w.getAttribute("data-wave-state"), w.textContent]))).toEqual([
        ["running", "up-b1"], ["later", "up-b2"],
      ]);

      // Wave 1 only: the first agent gets its command (and its row shows it pending), the second none.
      expect((await fleet[0].nextUpgrade()).version).toBe(VERSION);
      await page.waitForSelector(`${row("up-b1")} .upgrade[data-state="pending"]`, { timeout: 15_000 });
      await fleet[1].pull();
      expect(fleet[1].upgrades).toEqual([]);

      // The first agent tried the version and went back: the rollout stops, with its reason.
      fleet[0].sendUpgrade({ version: VERSION, state: "rolled-back", reason: ROLLBACK });
      await page.waitForSelector(`${r}[data-state="stopped"]`, { timeout: 20_000 });
      const stopped = (await server.api("GET", "/api/v1/agents/upgrade")).json.rollouts[0];
      expect(stopped.state).toBe("stopped");
      expect(await text(page, `${r} td.state .reason`)).toBe(stopped.reason);
      expect(await text(page, `${r} td.state .badge`)).toBe("stopped");
      expect(await text(page, `${r} .up-progress`)).toBe("stopped at wave 1 of 2");
      expect(await page.locator(`${r} .up-wave`).evaluateAll((li) => li.map((w) => w.getAttribute("data-wave-state")))).toEqual(["failed", "later"]);
      // The agent's row says what the agent said.
      await page.waitForSelector(`${row("up-b1")} .upgrade[data-state="rolled-back"]`, { timeout: 15_000 });
      expect(await text(page, `${row("up-b1")} .upgrade .u-reason`)).toBe(ROLLBACK);
      // The later wave never started.
      await fleet[1].pull();
      expect(fleet[1].upgrades).toEqual([]);
      expect(await upgradeOf(fleet[1])).toBeNull();
      expect(await page.locator(`${row("up-b2")} .upgrade`).count()).toBe(0);

      await page.screenshot({ path: "/tmp/outpost-agent-upgrade.png", fullPage: true });
      expectClean();
    } finally {
      await context.close();
    }
  });

  it("shows a viewer the upgrades and rollouts, and none of the upgrade controls", async () => {
    const t = await server.api("POST", "/api/v1/api-tokens", { role: "viewer", name: "upgrade-viewer" });
    expect(t.status, t.text).toBe(201);
    const { context, page } = await open(t.json.token, "viewer");
    try {
      await page.waitForSelector(`${row(one.name)} .upgrade[data-state="succeeded"]`, { timeout: 15_000 });
      await page.waitForSelector('#upgrade-rollouts tr[data-state="stopped"]', { timeout: 10_000 });
      for (const sel of [`${row(one.name)} .agent-upgrade-open`, "#upgrade-form", "#up-version", "#upgrade-submit"]) {
        expect(await page.locator(sel).first().isVisible(), sel).toBe(false);
      }
      expectClean();
    } finally {
      await context.close();
    }
  });
});
