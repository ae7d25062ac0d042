// scripts/publish-plugins.ts against a real local server (wrangler dev: D1 and R2 as
// `npm start` has them): new plug-ins are published, unchanged ones are a no-op, one
// changed without a version bump is reported and left alone, a broken one does not
// stop the others.
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { TestServer } from "../test/support/local-server.ts";
import { packAndCheck } from "./pack-plugin.ts";
import { describePublish, publishPlugins } from "./publish-plugins.ts";

function addPlugin(root: string, folder: string, id: string, version: string, script = "#!/bin/sh\necho hi\n"): string {
  const dir = join(root, folder);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "outpost-plugin.json"), JSON.stringify({ id, version, name: id, steps: [{ name: "go", run: ["./go.sh"] }] }));
  writeFileSync(join(dir, "go.sh"), script);
  chmodSync(join(dir, "go.sh"), 0o755);
  return dir;
}

describe("publishPlugins", () => {
  const server = new TestServer();
  beforeAll(() => server.start());
  afterAll(() => server.stop());

  it("publishes, skips the unchanged, and warns about a change without a version bump", async () => {
    const root = mkdtempSync(join(tmpdir(), "publish-plugins-"));
    const alpha = addPlugin(root, "alpha", "alpha", "1.0.0");
    addPlugin(root, "beta", "beta", "2.1.0");
    mkdirSync(join(root, "not-a-plugin")); // no manifest: ignored
    writeFileSync(join(root, "stray-file.txt"), "ignored");

    const first = await publishPlugins(server.base, server.adminToken, root);
    expect(first).toEqual({ published: ["alpha@1.0.0", "beta@2.1.0"], unchanged: [], conflicts: [], failed: [] });
    const listed = await server.api("GET", "/api/v1/plugins");
    expect(listed.json.plugins.map((p: { id: string; latest: string }) => `${p.id}@${p.latest}`)).toEqual(["alpha@1.0.0", "beta@2.1.0"]);
    const stored = await server.api("GET", "/api/v1/plugins/alpha/1.0.0");
    expect(stored.json.sha256).toBe((await packAndCheck(alpha)).sha256);

    const second = await publishPlugins(server.base, server.adminToken, root);
    expect(second).toEqual({ published: [], unchanged: ["alpha@1.0.0", "beta@2.1.0"], conflicts: [], failed: [] });

    writeFileSync(join(alpha, "go.sh"), "#!/bin/sh\necho changed\n");
    addPlugin(root, "gamma", "gamma", "0.0.1");
    const broken = addPlugin(root, "broken", "broken", "1.0.0");
    writeFileSync(join(broken, "outpost-plugin.json"), "{ not json");
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    try {
      const third = await publishPlugins(server.base, server.adminToken, root);
      expect(third.published).toEqual(["gamma@0.0.1"]);
      expect(third.unchanged).toEqual(["beta@2.1.0"]);
      expect(third.conflicts).toEqual(["alpha@1.0.0"]);
      expect(third.failed).toEqual([{ plugin: "broken", error: expect.stringMatching(/outpost-plugin\.json is not valid UTF-8 JSON/) }]);
      expect(warn).toHaveBeenCalledWith("plugin alpha version 1.0.0 changed without a version bump; not published");
      expect(describePublish(third)).toBe("Plug-ins: 1 published, 1 unchanged, 1 changed without a version bump (not published), 1 failed");
    } finally {
      warn.mockRestore();
    }
    // The server still has the bytes first published.
    expect((await server.api("GET", "/api/v1/plugins/alpha/1.0.0")).json.sha256).toBe(stored.json.sha256);
  });

  it("reports a server that refuses the token, and a missing folder as nothing to do", async () => {
    const root = mkdtempSync(join(tmpdir(), "publish-plugins-"));
    addPlugin(root, "delta", "delta", "1.0.0");
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    try {
      const refused = await publishPlugins(server.base, "wrong-token", root);
      expect(refused.failed).toEqual([{ plugin: "delta@1.0.0", error: expect.stringMatching(/^HTTP 401 invalid API token/) }]);
    } finally {
      warn.mockRestore();
    }
    expect(await publishPlugins(server.base, server.adminToken, join(root, "missing"))).toEqual({ published: [], unchanged: [], conflicts: [], failed: [] });
  });
});
