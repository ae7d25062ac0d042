// A signed agent package made with the test server's own release key (the local launcher
// generated it in the state dir): tiny, but a valid package in every respect the server
// checks. `note` changes the bytes under the same version. Returns the file's path.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { importSigningKey, writeAgentPackageTar } from "../../schema/agent-package.ts";
import type { TestServer } from "../support/local-server.ts";

export async function signedPackage(server: TestServer, version: string, note = ""): Promise<string> {
  const key = await importSigningKey(readFileSync(join(server.stateDir, "release-key.pem"), "utf8"));
  const data = new TextEncoder().encode(`console.log("outpost agent ${version}${note}");\n`);
  const { tar } = await writeAgentPackageTar(
    { version, platforms: ["linux-x64-gnu", "linux-x64-musl"], node: ">=22", entry: "bin/outpost-agent.mjs", files: [{ path: "bin/outpost-agent.mjs", mode: 0o644, data }] },
    key,
  );
  const file = join(server.work, `outpost-agent-${version}${note}.tar.gz`);
  writeFileSync(file, gzipSync(tar));
  return file;
}
