// plugins/template (file-template), step render, run as the agent runs it
// (run-plugin.ts): placeholders, modes, atomic replacement, unknown placeholders,
// invalid inputs, outputs.
import { afterEach, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cleanup, loadManifest, runPluginStep } from "./run-plugin.ts";

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "outpost-template-test-"));
  dirs.push(d);
  return d;
};
afterEach(async () => {
  await cleanup();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

// A work folder holding the given files (as an earlier step of the deployment left them).
function workWith(files: Record<string, string>): string {
  const work = tempDir();
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(work, name, ".."), { recursive: true });
    writeFileSync(join(work, name), text);
  }
  return work;
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const modeOf = (p: string) => statSync(p).mode & 0o7777;

describe("manifest", () => {
  it("declares render with its inputs, defaults and outputs, run through sh run.sh", () => {
    const m = loadManifest("template");
    expect(m).toMatchObject({ id: "file-template", version: "1.0.0" });
    const step = m.steps.find((s) => s.name === "render")!;
    expect(step.run).toEqual(["sh", "run.sh"]);
    const byName = Object.fromEntries(step.inputs.map((i) => [i.name, i]));
    expect(byName.template).toMatchObject({ type: "string", required: true });
    expect(byName.destination).toMatchObject({ type: "string", required: true });
    expect(byName.content).toMatchObject({ type: "string", required: false });
    expect(byName.mode).toMatchObject({ type: "string", default: "0644" });
    expect(byName.variables).toMatchObject({ type: "string", required: false });
    expect(step.outputs.map((o) => o.name)).toEqual(["path", "bytes", "sha256"]);
  });
});

describe("render", () => {
  it("fills vars. and env. placeholders from a template file, leaves other {{ }} alone, and records path, bytes, sha256", async () => {
    const work = workWith({
      "conf/app.conf.tmpl": [
        "host = {{ vars.host }}",
        "port = {{vars.port}}",
        "debug = {{  vars.debug  }}",
        "deployment = {{ env.OUTPOST_DEPLOYMENT_ID }}",
        "written to = {{ env.OUTPOST_INPUT_DESTINATION }}",
        "helm = {{ .Values.image }}",
        "literal = {{ vars.literal }}",
        "",
      ].join("\n"),
    });
    const variables = JSON.stringify({ host: "db.internal", port: 5432, debug: false, literal: "{{ vars.host }}" });
    const r = await runPluginStep("template", "render", { template: "conf/app.conf.tmpl", destination: "out/etc/app.conf", mode: "0600", variables }, { workDir: work });
    expect(r.code, r.log).toBe(0);

    const dest = join(work, "out/etc/app.conf");
    const written = readFileSync(dest);
    expect(written.toString()).toBe(
      [
        "host = db.internal",
        "port = 5432",
        "debug = false",
        "deployment = dep-test",
        "written to = out/etc/app.conf",
        "helm = {{ .Values.image }}",
        "literal = {{ vars.host }}", // one pass: a value is not rendered again
        "",
      ].join("\n"),
    );
    expect(modeOf(dest)).toBe(0o600);
    expect(r.outputs).toEqual({ path: dest, bytes: String(written.length), sha256: sha256(written) });
    expect(r.lines).toContain("note: left as written (not a vars. or env. placeholder): {{ .Values.image }}");
    expect(r.lines.at(-1)).toBe(`rendered conf/app.conf.tmpl → ${dest} (${written.length} bytes, mode 0600, sha256 ${sha256(written)})`);
    expect(readdirSync(join(work, "out/etc"))).toEqual(["app.conf"]); // no temp file left
  });

  it("renders inline content to an absolute destination with exactly the mode asked, whatever the umask", async () => {
    const elsewhere = tempDir();
    const dest = join(elsewhere, "greeting.txt");
    const r = await runPluginStep("template", "render", { template: "inline", content: "hello {{vars.who}}\n", destination: dest, mode: "0666", variables: '{"who":"world"}' });
    expect(r.code, r.log).toBe(0);
    expect(readFileSync(dest, "utf8")).toBe("hello world\n");
    expect(modeOf(dest)).toBe(0o666); // the test's umask (022) would have made it 0644
    expect(r.outputs).toMatchObject({ path: dest, bytes: "12" });
    expect(r.lines.at(-1)).toMatch(/^rendered inline content → /);
  });

  it("defaults to mode 0644 and replaces an existing file", async () => {
    const work = workWith({ "site.conf": "old\n" });
    chmodSync(join(work, "site.conf"), 0o600);
    const r = await runPluginStep("template", "render", { template: "inline", content: "new\n", destination: "site.conf" }, { workDir: work });
    expect(r.code, r.log).toBe(0);
    expect(readFileSync(join(work, "site.conf"), "utf8")).toBe("new\n");
    expect(modeOf(join(work, "site.conf"))).toBe(0o644);
    expect(readdirSync(work)).toEqual(["site.conf"]);
  });

  it("fails on unknown placeholders, naming each with its line, and leaves the destination as it was", async () => {
    const work = workWith({
      "app.tmpl": "a = {{ vars.known }}\nb = {{ vars.missing }}\nc = {{env.OUTPOST_TEST_NOT_SET}}\nd = {{ vars.missing }}\n",
      "app.conf": "old\n",
    });
    const r = await runPluginStep("template", "render", { template: "app.tmpl", destination: "app.conf", variables: '{"known": 1}' }, { workDir: work });
    expect(r.code, r.log).toBe(1);
    expect(r.lines).toEqual([
      "render: unknown placeholders: {{ vars.missing }} (line 2), {{ env.OUTPOST_TEST_NOT_SET }} (line 3) (vars. come from the variables input, env. from the step's environment)",
    ]);
    expect(readFileSync(join(work, "app.conf"), "utf8")).toBe("old\n");
    expect(readdirSync(work).sort()).toEqual(["app.conf", "app.tmpl"]);
    expect(r.outputs).toBeNull();
  });

  it("fails naming a missing template file, and a destination that is a folder", async () => {
    const work = workWith({ "t.tmpl": "x\n" });
    const missing = await runPluginStep("template", "render", { template: "nope.tmpl", destination: "out.txt" }, { workDir: work });
    expect(missing.code, missing.log).toBe(1);
    expect(missing.lines).toEqual([`render: cannot read the template ${join(work, "nope.tmpl")}: no such file`]);

    mkdirSync(join(work, "adir"));
    const folder = await runPluginStep("template", "render", { template: "t.tmpl", destination: "adir" }, { workDir: work });
    expect(folder.code, folder.log).toBe(1);
    expect(folder.lines).toEqual([`render: destination ${join(work, "adir")} is a folder`]);
    expect(readdirSync(join(work, "adir"))).toEqual([]);
  });

  it.each([
    [{ template: "inline", destination: "x" }, "render: template is inline but content is not given"],
    [{ template: "t.tmpl", content: "x", destination: "x" }, "render: content is only used with template: inline (a file named inline is ./inline)"],
    [{ template: "inline", content: "x" }, "render: destination is required"],
    [{ template: "inline", content: "x", destination: "x", mode: "rw-r--r--" }, 'render: mode must be octal permissions like 0644, not "rw-r--r--"'],
    [{ template: "inline", content: "x", destination: "x", variables: "[1, 2]" }, 'render: variables must be a JSON object, e.g. {"port": 8080}'],
    [{ template: "inline", content: "x", destination: "x", variables: '{"db": {"host": "h"}}' }, "render: variable db must be a string, number or boolean"],
  ])("refuses invalid inputs with exit 2, writing nothing: %j", async (inputs, message) => {
    const work = workWith({ "t.tmpl": "x\n" });
    const r = await runPluginStep("template", "render", inputs, { workDir: work });
    expect(r.code, r.log).toBe(2);
    expect(r.lines).toEqual([message]);
    expect(readdirSync(work)).toEqual(["t.tmpl"]);
  });

  it("does not echo the variables text when it is not JSON (it may hold a resolved secret)", async () => {
    const r = await runPluginStep("template", "render", { template: "inline", content: "x", destination: "x", variables: '{"password": "s3cr3t-value", oops}' });
    expect(r.code, r.log).toBe(2);
    expect(r.lines).toEqual(['render: variables is not valid JSON: give a JSON object text, e.g. {"port": 8080}']);
    expect(r.log).not.toContain("s3cr3t-value");
  });

  it("starts the script with OUTPOST_NODE, not whatever node is on PATH", async () => {
    const bin = tempDir();
    const fakeNode = join(bin, "agent-node");
    writeFileSync(fakeNode, `#!/bin/sh\necho "started by OUTPOST_NODE" >&2\nexec "${process.execPath}" "$@"\n`, { mode: 0o755 });
    const r = await runPluginStep("template", "render", { template: "inline", content: "x", destination: "x" }, { env: { OUTPOST_NODE: fakeNode, PATH: "/usr/bin:/bin" } });
    expect(r.code, r.log).toBe(0);
    expect(r.lines[0]).toBe("started by OUTPOST_NODE");
  });
});
