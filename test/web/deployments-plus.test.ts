// The web page for issue 8, against a real server in headless Chromium, driven as an
// admin: a plug-in package uploaded (built here with the system tar) and shown with its
// inputs; a secret kept without its value ever reaching the page's DOM; agents tagged
// and given properties; a deployment by tag with a plug-in step filled in through the
// generated input form, a property and a rolling rollout, shown wave by wave with its
// outputs; a deployment canceled; a wave failing and stopping the rest; the server's 422
// for a missing required input. The agents are played by the test (fake-agent.ts).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { TestServer, waitFor } from "../support/local-server.ts";
import { FakeAgent } from "./fake-agent.ts";

const CHROMIUM = "/usr/bin/chromium";
const PLUGIN = "hello-tools";
const SECRET_VALUE = "s3cr3t-Value-that-must-never-show-9f2c";
const SECRET_VALUE_2 = "another-s3cr3t-Value-4471";

const manifest = (version: string, description = "Greets whoever it is told to.") => ({
  id: PLUGIN,
  version,
  name: "Hello tools",
  description,
  steps: [{
    name: "greet",
    description: "Prints a greeting and gives it back as an output.",
    inputs: [
      { name: "who", type: "string", required: true, description: "Whom to greet." },
      { name: "greeting", type: "string", default: "hello" },
      { name: "times", type: "number", default: 1 },
      { name: "loud", type: "boolean", default: false },
      { name: "token", type: "string", secret: true, description: "A token it never prints." },
    ],
    outputs: [{ name: "message", description: "The greeting." }],
    run: ["sh", "greet.sh"],
  }],
});

describe("web page: plug-ins, secrets, tags, rollout, cancel", () => {
  const server = new TestServer();
  const webA = new FakeAgent(server, "web-a");
  const webB = new FakeAgent(server, "web-b");
  let browser: Browser | undefined;
  const pageErrors: string[] = [];
  const cspViolations: string[] = [];

  // A package: outpost-plugin.json and its script at the root of a .tar.gz.
  function buildPackage(name: string, m: unknown, files: Record<string, string> = { "greet.sh": 'echo "$OUTPOST_INPUT_GREETING $OUTPOST_INPUT_WHO"\n' }): string {
    const dir = join(server.work, "packages", name);
    mkdirSync(dir, { recursive: true });
    if (m !== null) writeFileSync(join(dir, "outpost-plugin.json"), JSON.stringify(m, null, 2));
    for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
    const out = join(server.work, "packages", `${name}.tar.gz`);
    execFileSync("tar", ["czf", out, "-C", dir, ...(m !== null ? ["outpost-plugin.json"] : []), ...Object.keys(files)]);
    return out;
  }

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: the web page cannot be tested (Debian: apt-get install chromium)`);
    const launched = chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-quic"],
    });
    await server.start();
    for (const a of [webA, webB]) {
      await a.register();
      await a.connect();
    }
    browser = await launched;
  });

  afterAll(async () => {
    const results = await Promise.allSettled([browser?.close(), webA.disconnect(), webB.disconnect()]);
    await server.stop();
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  });

  async function open(): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser!.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    page.on("pageerror", (e) => pageErrors.push(e.message));
    page.on("console", (m) => {
      if (/Content.Security.Policy/i.test(m.text())) cspViolations.push(m.text());
    });
    await page.goto(`${server.base}/#token=${encodeURIComponent(server.adminToken)}`);
    await page.waitForSelector('tr[data-agent="web-a"]', { timeout: 15_000 });
    await page.waitForSelector('body[data-role="admin"]', { timeout: 10_000 });
    return { context, page };
  }
  const text = (page: Page, selector: string) => page.locator(selector).first().innerText();
  const expectClean = () => {
    expect(pageErrors).toEqual([]);
    expect(cspViolations).toEqual([]);
  };
  const waitText = (page: Page, selector: string, re: RegExp, what: string) =>
    waitFor(async () => re.test(await page.locator(selector).first().innerText().catch(() => "")), 15_000, what);
  const latestDeployment = async () => (await server.api("GET", "/api/v1/deployments?limit=1")).json.deployments[0];

  it("uploads a plug-in package and lists it with its steps, inputs and outputs; deletes a version", async () => {
    const { context, page } = await open();
    try {
      const pkg = buildPackage("hello-1.0.0", manifest("1.0.0"));
      await page.setInputFiles("#plugin-file", pkg);
      await page.click("#plugin-upload-submit");
      await waitText(page, "#plugins-message", /^Uploaded hello-tools@1\.0\.0 \(steps: greet\)\.$/, "the upload's message");
      const row = `tr[data-plugin="${PLUGIN}"]`;
      await page.waitForSelector(row);
      expect(await text(page, `${row} .latest`)).toBe("1.0.0");
      expect(await text(page, `${row} .description`)).toBe("Greets whoever it is told to.");
      // The uploaded plug-in is opened: its step, each input with its type, whether it
      // is required, its default and whether it is secret, and its outputs.
      const step = `tr[data-plugin-detail="${PLUGIN}"] [data-plugin-step="greet"]`;
      await page.waitForSelector(`${step} tr[data-input="who"]`, { timeout: 10_000 });
      const input = async (name: string) => page.locator(`${step} tr[data-input="${name}"] td`).allInnerTexts();
      expect(await input("who")).toEqual(["who", "string", "required", "", "", "Whom to greet."]);
      expect(await input("greeting")).toEqual(["greeting", "string", "optional", "hello", "", ""]);
      expect(await input("times")).toEqual(["times", "number", "optional", "1", "", ""]);
      expect(await input("loud")).toEqual(["loud", "boolean", "optional", "false", "", ""]);
      expect(await input("token")).toEqual(["token", "string", "optional", "", "secret", "A token it never prints."]);
      expect(await page.locator(`${step} code[data-output="message"]`).count()).toBe(1);
      expect(await text(page, `${step} .run`)).toBe("runs sh greet.sh");

      // The same bytes again: 200, already there.
      await page.setInputFiles("#plugin-file", pkg);
      await page.click("#plugin-upload-submit");
      await waitText(page, "#plugins-message", /already here with exactly these bytes/, "the 200 message");
      // Other bytes under the same version: the server's 409, in its words.
      await page.setInputFiles("#plugin-file", buildPackage("hello-1.0.0-other", manifest("1.0.0", "Other bytes.")));
      await page.click("#plugin-upload-submit");
      await waitText(page, "#plugins-message", /^Cannot upload hello-1\.0\.0-other\.tar\.gz \(HTTP 409\): ./, "the 409 message");
      expect(await page.locator("#plugins-message.error").count()).toBe(1);
      // No manifest: 422.
      await page.setInputFiles("#plugin-file", buildPackage("no-manifest", null));
      await page.click("#plugin-upload-submit");
      await waitText(page, "#plugins-message", /^Cannot upload no-manifest\.tar\.gz \(HTTP 422\): ./, "the 422 message");

      // A second version becomes the latest; deleting it (two clicks) leaves 1.0.0.
      await page.setInputFiles("#plugin-file", buildPackage("hello-1.1.0", manifest("1.1.0")));
      await page.click("#plugin-upload-submit");
      await waitText(page, "#plugins-message", /^Uploaded hello-tools@1\.1\.0/, "the second upload");
      await waitText(page, `${row} .latest`, /^1\.1\.0$/, "1.1.0 as the latest");
      expect(await text(page, `${row} .versions`)).toMatch(/1\.0\.0/);
      const detail = `tr[data-plugin-detail="${PLUGIN}"][data-version="1.1.0"]`;
      await page.waitForSelector(`${detail} [data-plugin-step="greet"]`);
      await page.click(`${detail} .pd-delete button`);
      await page.click(`${detail} .pd-delete button.danger`);
      await waitText(page, "#plugins-message", /^Deleted hello-tools@1\.1\.0\.$/, "the delete's message");
      await waitText(page, `${row} .latest`, /^1\.0\.0$/, "1.0.0 as the latest again");
      const listed = await server.api("GET", "/api/v1/plugins");
      expect(listed.json.plugins.map((p: any) => [p.id, p.latest])).toEqual([[PLUGIN, "1.0.0"]]);
      expectClean();
    } finally {
      await context.close();
    }
  });

  it("saves, replaces and deletes secrets; a value never reaches the page's DOM", async () => {
    const { context, page } = await open();
    const valueAnywhere = (v: string) => page.evaluate((v) => document.documentElement.outerHTML.includes(v)
      || Array.from(document.querySelectorAll("input, textarea, select")).some((i) => (i as HTMLInputElement).value.includes(v)), v);
    try {
      expect(await page.getAttribute("#secret-value", "type")).toBe("password");
      await page.fill("#secret-name", "DEPLOY_TOKEN");
      await page.fill("#secret-value", SECRET_VALUE);
      await page.click("#secret-save");
      await page.waitForSelector('tr[data-secret="DEPLOY_TOKEN"]', { timeout: 10_000 });
      expect(await page.inputValue("#secret-value")).toBe("");
      expect(await text(page, "#secrets-message")).toContain("Secret DEPLOY_TOKEN saved");
      expect(await text(page, 'tr[data-secret="DEPLOY_TOKEN"] .updated')).toMatch(/just now|s ago/);
      expect(await valueAnywhere(SECRET_VALUE)).toBe(false);

      // The same name again replaces it.
      await page.fill("#secret-name", "DEPLOY_TOKEN");
      await page.fill("#secret-value", SECRET_VALUE_2);
      await page.click("#secret-save");
      await waitText(page, "#secrets-message", /Secret DEPLOY_TOKEN replaced/, "the replace message");
      expect(await page.inputValue("#secret-value")).toBe("");
      expect(await page.locator("tr[data-secret]").count()).toBe(1);

      // Another one, deleted in two clicks.
      await page.fill("#secret-name", "OLD_KEY");
      await page.fill("#secret-value", "old-value-xyz");
      await page.click("#secret-save");
      await page.waitForSelector('tr[data-secret="OLD_KEY"]', { timeout: 10_000 });
      await page.click('tr[data-secret="OLD_KEY"] td.actions button');
      await page.click('tr[data-secret="OLD_KEY"] td.actions button.danger');
      await page.waitForSelector('tr[data-secret="OLD_KEY"]', { state: "detached", timeout: 10_000 });
      const listed = await server.api("GET", "/api/v1/secrets");
      expect(listed.json.secrets.map((s: any) => s.name)).toEqual(["DEPLOY_TOKEN"]);
      expect(JSON.stringify(listed.json)).not.toContain(SECRET_VALUE_2);

      for (const v of [SECRET_VALUE, SECRET_VALUE_2, "old-value-xyz"]) expect(await valueAnywhere(v)).toBe(false);
      expectClean();
    } finally {
      await context.close();
    }
  });

  it("edits an agent's tags and properties", async () => {
    const { context, page } = await open();
    const edit = async (agent: string, tags: string, props: string) => {
      await page.click(`tr[data-agent="${agent}"] .agent-edit-open`);
      await page.waitForSelector(`tr[data-agent-edit="${agent}"]`);
      await page.fill("#ae-tags", tags);
      await page.fill("#ae-props", props);
      await page.click(`tr[data-agent-edit="${agent}"] .ae-save`);
    };
    try {
      // A line that is not key=value is refused before anything is sent.
      await edit("web-a", "web", "region eu-west");
      await waitText(page, "#ae-message", /line 1: write key=value/, "the parse error");
      await page.fill("#ae-props", "region=eu-west\ncolor = blue");
      await page.click('tr[data-agent-edit="web-a"] .ae-save');
      await page.waitForSelector('tr[data-agent-edit="web-a"]', { state: "detached", timeout: 10_000 });
      await edit("web-b", "web, canary", "region=us-east");
      await page.waitForSelector('tr[data-agent-edit="web-b"]', { state: "detached", timeout: 10_000 });

      expect(await page.locator('tr[data-agent="web-a"] td.tags .tag').allInnerTexts()).toEqual(["web"]);
      expect(await page.locator('tr[data-agent="web-b"] td.tags .tag').allInnerTexts()).toEqual(["web", "canary"]);
      expect(await text(page, 'tr[data-agent="web-a"] [data-prop="color"]')).toBe("color=blue");
      const agents = (await server.api("GET", "/api/v1/agents")).json.agents;
      const byName = Object.fromEntries(agents.map((a: any) => [a.name, a]));
      expect(byName["web-a"].tags).toEqual(["web"]);
      expect(byName["web-a"].properties).toEqual({ region: "eu-west", color: "blue" });
      expect(byName["web-b"].tags).toEqual(["web", "canary"]);
      expect(byName["web-b"].properties).toEqual({ region: "us-east" });

      // Opening the editor again shows what is saved.
      await page.click('tr[data-agent="web-b"] .agent-edit-open');
      expect(await page.inputValue("#ae-tags")).toBe("web, canary");
      expect(await page.inputValue("#ae-props")).toBe("region=us-east");
      expectClean();
    } finally {
      await context.close();
    }
  });

  it("deploys by tag with a plug-in step filled in through its generated form, a property and a rollout; shows waves and outputs", async () => {
    const { context, page } = await open();
    try {
      await page.click("#new-deployment-open");
      await page.fill("#nd-name", "web-rollout");
      await page.check("#nd-by-tags");
      expect(await page.locator("#nd-agents").isVisible()).toBe(false);
      await page.fill("#nd-tags", "web");
      await waitText(page, "#nd-tag-matches", /web-a, web-b/, "the agents the tags name");
      await page.click("#nd-add-prop");
      await page.fill("#nd-props li:last-child .kv-key", "release");
      await page.fill("#nd-props li:last-child .kv-value", "42");
      await page.fill("#nd-batch", "1");
      await page.check("#nd-stop-on-failure");

      // The form starts with a shell step; a plug-in step is added and moved above it.
      await page.fill("#nd-steps li:first-child .nd-step-name", "announce");
      await page.fill("#nd-steps li:first-child .nd-step-command", "echo release ${{ deployment.properties.release }}");
      await page.click("#nd-add-plugin-step");
      const plug = "#nd-steps li.plugin-step";
      await page.click(`${plug} .nd-step-up`);
      expect(await page.locator("#nd-steps > li").first().getAttribute("data-type")).toBe("plugin");
      await page.fill(`${plug} .nd-step-name`, "greet");
      await page.selectOption(`${plug} .nd-plugin`, PLUGIN);
      const field = (name: string) => `${plug} .nd-input[data-input="${name}"]`;
      await page.waitForSelector(`${field("who")} .nd-input-value`, { timeout: 10_000 });
      // Generated from the manifest: types, defaults, required marked, the secret offered by name.
      expect(await page.inputValue(`${plug} .nd-plugin-version`)).toBe("");
      expect(await text(page, `${plug} .nd-plugin-version option:checked`)).toBe("latest (1.0.0)");
      expect(await page.locator(`${field("who")} .input-required`).count()).toBe(1);
      expect(await page.locator(`${field("greeting")} .input-required`).count()).toBe(0);
      expect(await page.inputValue(`${field("greeting")} .nd-input-value`)).toBe("hello");
      expect(await page.getAttribute(`${field("times")} .nd-input-value`, "type")).toBe("number");
      expect(await page.inputValue(`${field("times")} .nd-input-value`)).toBe("1");
      expect(await page.getAttribute(`${field("loud")} .nd-input-value`, "type")).toBe("checkbox");
      expect(await page.isChecked(`${field("loud")} .nd-input-value`)).toBe(false);
      await page.selectOption(`${field("token")} .nd-secret-choice`, "DEPLOY_TOKEN");
      expect(await page.inputValue(`${field("token")} .nd-input-value`)).toBe("${{ secrets.DEPLOY_TOKEN }}");
      await page.fill(`${field("who")} .nd-input-value`, "${{ agent.name }} in ${{ agent.properties.region }}");
      await page.fill(`${field("times")} .nd-input-value`, "2");
      await page.check(`${field("loud")} .nd-input-value`);
      await page.screenshot({ path: "/tmp/outpost-new-deployment.png", fullPage: true });
      await page.click("#nd-submit");
      await page.waitForSelector("#new-deployment", { state: "hidden", timeout: 10_000 });

      const created = await latestDeployment();
      expect(created.name).toBe("web-rollout");
      const view = (await server.api("GET", `/api/v1/deployments/${created.id}`)).json;
      expect(view.targets.tags).toEqual(["web"]);
      expect([...view.targets.agents].sort()).toEqual(["web-a", "web-b"]);
      expect(view.properties).toEqual({ release: "42" });
      expect(view.rollout).toMatchObject({ batchSize: 1, stopOnFailure: true, waves: 2 });

      // Wave 1 is one agent; the other has nothing yet.
      const first = await waitFor(async () => ((await webA.hasCommand(created.id)) ? webA : (await webB.hasCommand(created.id)) ? webB : null), 15_000, "wave 1's command");
      const second = first === webA ? webB : webA;
      expect(await second.hasCommand(created.id)).toBe(false);
      const cmd = await first.command(created.id);
      expect(cmd.steps.map((s) => s.name)).toEqual(["greet", "announce"]);
      const [greet, announce] = cmd.steps;
      expect(greet).toMatchObject({ type: "plugin", plugin: { id: PLUGIN, version: "1.0.0" }, step: "greet" });
      expect(greet.inputs).toEqual({
        who: "${{ agent.name }} in ${{ agent.properties.region }}", greeting: "hello", times: 2, loud: true, token: "${{ secrets.DEPLOY_TOKEN }}",
      });
      expect(announce).toMatchObject({ type: "shell", command: "echo release ${{ deployment.properties.release }}" });

      // The page: targets and tags, the property, wave 1 of 2, steps grouped by wave.
      const body = `tbody[data-deployment="${created.id}"]`;
      await page.waitForSelector(`${body} .dep-rollout[data-current-wave="1"][data-waves="2"]`, { timeout: 10_000 });
      expect(await text(page, `${body} .dep-agents`)).toMatch(/web-a, web-b|web-b, web-a/);
      expect(await page.locator(`${body} .dep-tags .tag`).allInnerTexts()).toEqual(["web"]);
      expect(await text(page, `${body} .dep-properties [data-prop="release"]`)).toBe("release=42");
      expect(await text(page, `${body} .dep-rollout`)).toContain("wave 1 of 2");
      expect(await page.locator(`${body} tr.wave-row`).count()).toBe(2);
      expect(await page.getAttribute(`${body} tr.wave-row[data-wave="1"]`, "data-state")).toBe("running");
      expect(await text(page, `${body} tr.wave-row[data-wave="1"] .wave-agents`)).toBe(first.name);
      expect(await page.getAttribute(`${body} tr.wave-row[data-wave="2"]`, "data-state")).toBe("waiting");
      expect(await text(page, `${body} tr.step-row[data-step="${greet.stepId}"] .plugin-ref`)).toBe(`${PLUGIN}@1.0.0:greet`);
      // Rows in order: wave 1's header, its agent's steps, wave 2's header, its agent's steps.
      const order = await page.locator(`${body} tr.wave-row, ${body} tr.step-row`).evaluateAll((rows) =>
        rows.map((r) => (r.classList.contains("wave-row") ? `wave ${r.getAttribute("data-wave")}` : r.querySelector("td.agent")!.firstChild!.textContent)));
      expect(order).toEqual(["wave 1", first.name, first.name, "wave 2", second.name, second.name]);

      // A version in use by an unfinished deployment cannot be deleted: the 409, shown.
      await page.click(`tr[data-plugin="${PLUGIN}"] button.dep-open`);
      const detail = `tr[data-plugin-detail="${PLUGIN}"][data-version="1.0.0"]`;
      await page.waitForSelector(`${detail} [data-plugin-step="greet"]`, { timeout: 10_000 });
      await page.click(`${detail} .pd-delete button`);
      await page.click(`${detail} .pd-delete button.danger`);
      await waitText(page, "#plugins-message", /^Cannot delete hello-tools@1\.0\.0: ./, "the 409 of a version in use");
      expect((await server.api("GET", "/api/v1/plugins")).json.plugins.length).toBe(1);

      // Wave 1 runs: the plug-in step gives an output.
      await first.started(created.id, greet.stepId);
      await first.finished(created.id, greet.stepId, { outputs: { message: `hello ${first.name}` } });
      await first.started(created.id, announce.stepId);
      await first.finished(created.id, announce.stepId);
      const outputs = `${body} tr.outputs-row[data-outputs-for="${greet.stepId}"]`;
      await page.waitForSelector(`${outputs} tr[data-output="message"]`, { timeout: 10_000 });
      expect(await page.locator(`${outputs} tr[data-output="message"] td`).allInnerTexts()).toEqual(["message", "=", `hello ${first.name}`]);
      expect(await page.locator(`${body} tr.outputs-row[data-outputs-for="${announce.stepId}"]`).count()).toBe(0);

      // Wave 2 follows.
      const cmd2 = await second.command(created.id);
      await page.waitForSelector(`${body} .dep-rollout[data-current-wave="2"]`, { timeout: 10_000 });
      expect(await page.getAttribute(`${body} tr.wave-row[data-wave="1"]`, "data-state")).toBe("done");
      for (const s of cmd2.steps) {
        await second.started(created.id, s.stepId);
        await second.finished(created.id, s.stepId, s.type === "plugin" ? { outputs: { message: `hello ${second.name}` } } : {});
      }
      await page.waitForSelector(`${body}[data-status="succeeded"]`, { timeout: 10_000 });
      await page.waitForSelector(`${body} tr.wave-row[data-wave="2"][data-state="done"]`, { timeout: 10_000 });
      expect(await text(page, `${body} tr.outputs-row[data-outputs-for="${cmd2.steps[0].stepId}"] tr[data-output="message"] td.v`)).toBe(`hello ${second.name}`);
      // Ended: nothing to cancel.
      expect(await page.isDisabled(`${body} .dep-cancel`)).toBe(true);
      await page.screenshot({ path: "/tmp/outpost-rollout.png", fullPage: true });
      expectClean();
    } finally {
      await context.close();
    }
  });

  it("stops a rollout after a failed wave: the later wave is skipped", async () => {
    const r = await server.api("POST", "/api/v1/deployments", {
      name: "web-stop", targets: { tags: ["web"] }, rollout: { batchSize: "50%", stopOnFailure: true },
      steps: [{ name: "try", type: "shell", command: "false" }],
    });
    expect(r.status, r.text).toBe(201);
    const id = r.json.id;
    const { context, page } = await open();
    try {
      const first = await waitFor(async () => ((await webA.hasCommand(id)) ? webA : (await webB.hasCommand(id)) ? webB : null), 15_000, "wave 1's command");
      const stepId = (await first.command(id)).steps[0].stepId;
      await first.started(id, stepId);
      await first.finished(id, stepId, { status: "failed", exitCode: 1, reason: "exit code 1" });
      const body = `tbody[data-deployment="${id}"]`;
      await page.click(`${body} button.dep-open`);
      await page.waitForSelector(`${body}[data-status="failed"]`, { timeout: 15_000 });
      await page.waitForSelector(`${body} tr.wave-row[data-wave="2"][data-state="skipped"]`, { timeout: 10_000 });
      expect(await page.getAttribute(`${body} tr.wave-row[data-wave="1"]`, "data-state")).toBe("failed");
      expect(await page.locator(`${body} tr.step-row[data-wave="2"]`).getAttribute("data-status")).toBe("skipped");
      expectClean();
    } finally {
      await context.close();
    }
  });

  it("cancels a running deployment: canceling… until it has ended canceled", async () => {
    const r = await server.api("POST", "/api/v1/deployments", {
      name: "web-cancel", agents: ["web-a"],
      steps: [{ name: "long", type: "shell", command: "sleep 600" }, { name: "after", type: "shell", command: "true" }],
    });
    expect(r.status, r.text).toBe(201);
    const id = r.json.id;
    const cmd = await webA.command(id);
    await webA.started(id, cmd.steps[0].stepId);
    const { context, page } = await open();
    try {
      const body = `tbody[data-deployment="${id}"]`;
      await page.click(`${body} button.dep-open`);
      await page.waitForSelector(`${body}[data-status="running"] tr.step-row`, { timeout: 10_000 });
      expect(await page.locator(`${body} tr.wave-row`).count()).toBe(0); // no rollout: no waves
      expect(await page.isEnabled(`${body} .dep-cancel`)).toBe(true);
      await page.click(`${body} .dep-cancel`);
      expect(await text(page, `${body} .dep-cancel-box .question`)).toContain("Cancel web-cancel?");
      await page.click(`${body} .dep-cancel-confirm`);
      await page.waitForSelector(`${body} .dep-cancel[data-state="canceling"]`, { timeout: 10_000 });
      expect(await text(page, `${body} .dep-cancel`)).toBe("Canceling…");
      expect(await page.isDisabled(`${body} .dep-cancel`)).toBe(true);
      const canceling = (await server.api("GET", `/api/v1/deployments/${id}`)).json;
      expect(canceling.canceledAt).not.toBeNull();

      // The agent gets the cancel and ends its steps; the page follows.
      expect((await webA.cancelUnfinished(id)).length).toBe(2);
      await page.waitForSelector(`${body}[data-status="canceled"]`, { timeout: 15_000 });
      await page.waitForSelector(`${body} .dep-cancel[data-state="ended"]`, { timeout: 10_000 });
      expect(await page.isDisabled(`${body} .dep-cancel`)).toBe(true);
      expect(await page.locator(`${body} tr.step-row`).evaluateAll((rows) => rows.map((r) => r.getAttribute("data-status")))).toEqual(["canceled", "canceled"]);
      expectClean();
    } finally {
      await context.close();
    }
  });

  it("shows the server's 422 for a plug-in step missing a required input", async () => {
    const { context, page } = await open();
    try {
      const before = (await latestDeployment()).id;
      await page.click("#new-deployment-open");
      await page.check('#nd-agent-list input[value="web-a"]');
      await page.click("#nd-steps li:first-child .nd-step-remove");
      await page.click("#nd-add-plugin-step");
      const plug = "#nd-steps li.plugin-step";
      await page.selectOption(`${plug} .nd-plugin`, PLUGIN);
      await page.waitForSelector(`${plug} .nd-input[data-input="who"] .nd-input-value`, { timeout: 10_000 });
      // "who" is left empty: the page sends the step and the server refuses it.
      await page.click("#nd-submit");
      await waitText(page, "#nd-message", /^Cannot deploy: .*who/, "the 422 naming the missing input");
      expect(await page.locator("#new-deployment").isVisible()).toBe(true);
      expect((await latestDeployment()).id).toBe(before);
      // A secret that does not exist: 422 too.
      await page.fill(`${plug} .nd-input[data-input="who"] .nd-input-value`, "x");
      await page.fill(`${plug} .nd-input[data-input="token"] .nd-input-value`, "${{ secrets.NO_SUCH }}");
      await page.click("#nd-submit");
      await waitText(page, "#nd-message", /^Cannot deploy: .*NO_SUCH/, "the 422 naming the unknown secret");
      expect((await latestDeployment()).id).toBe(before);
      expectClean();
    } finally {
      await context.close();
    }
  });

  it("hides the admin controls from a viewer token", async () => {
    const t = await server.api("POST", "/api/v1/api-tokens", { role: "viewer", name: "web-viewer" });
    expect(t.status, t.text).toBe(201);
    const context = await browser!.newContext();
    const page = await context.newPage();
    try {
      await page.goto(`${server.base}/#token=${encodeURIComponent(t.json.token)}`);
      await page.waitForSelector('body[data-role="viewer"]', { timeout: 10_000 });
      await page.waitForSelector('tr[data-agent="web-a"]', { timeout: 10_000 });
      for (const sel of ["#plugin-upload", "#secret-form", 'tr[data-agent="web-a"] .agent-edit-open']) expect(await page.locator(sel).isVisible(), sel).toBe(false);
      await page.waitForSelector(`tr[data-plugin="${PLUGIN}"]`, { timeout: 10_000 });
    } finally {
      await context.close();
    }
  });
});
