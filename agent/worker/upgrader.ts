// The worker's share of an upgrade (docs/agent-lifecycle.md §Upgrade): download the
// version the server named, check its sha256 against the command and its signature
// against the release keys pinned at registration (whoever served it), unpack it next to
// the running version — never over it — and hand the switch to the monitor, which starts
// the new worker, waits for it to be healthy and goes back to this version if it is not.
// Each state is told to the server as it is reached.
import { createHash } from "node:crypto";
import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import type { UpgradeReport } from "../../schema/agent-api.ts";
import { AGENT_PACKAGE_LIMITS, PACKAGE_WORKER } from "../../schema/agent-package.ts";
import { describeCause } from "../errors.ts";
import { DIR_MODE, FILE_MODE } from "../home.ts";
import type { Logger } from "../log.ts";
import { verifyAgentPackage } from "../release-keys.ts";
import type { ApiClient } from "./api-client.ts";
import type { UpgradeRequest } from "./journal.ts";
import type { SwitchRequest } from "../upgrade-protocol.ts";


export type UpgraderDeps = {
  home: string;
  api: ApiClient;
  report: (r: UpgradeReport) => void;
  markHandled: (seq: number) => Promise<void>;
  // Hands the switch to the monitor (false: there is none to take it).
  handOver: (req: SwitchRequest) => boolean;
  log: Logger;
};

export const versionsDir = (home: string) => join(home, "versions");

export async function runUpgrade(deps: UpgraderDeps, req: UpgradeRequest): Promise<"handed-over" | "failed"> {
  const { log } = deps;
  const fail = async (reason: string): Promise<"failed"> => {
    log.error(`upgrade to ${req.version} failed: ${reason}`);
    deps.report({ version: req.version, state: "failed", reason: reason.slice(0, 500) });
    await deps.markHandled(req.seq);
    return "failed";
  };
  deps.report({ version: req.version, state: "downloading", reason: null });
  log.info(`upgrade to ${req.version}: downloading`);
  let bytes: Uint8Array;
  try {
    bytes = await deps.api.requestBytes(`/agent/v1/agent-versions/${encodeURIComponent(req.version)}`, AGENT_PACKAGE_LIMITS.packageBytes);
  } catch (e) {
    return fail(`cannot download the package: ${describeCause(e)}`);
  }
  deps.report({ version: req.version, state: "verifying", reason: null });
  const got = createHash("sha256").update(bytes).digest("hex");
  if (got !== req.sha256) return fail(`the downloaded package has sha256 ${got}, the server named ${req.sha256}; not used`);
  let pkg;
  try {
    pkg = await verifyAgentPackage(deps.home, bytes);
  } catch (e) {
    return fail(`the package is refused: ${describeCause(e)}`);
  }
  if (pkg.manifest.version !== req.version) return fail(`the package is version ${pkg.manifest.version}, not ${req.version}`);
  if (!pkg.files.some((f) => f.path === PACKAGE_WORKER)) return fail(`the package has no ${PACKAGE_WORKER}`);
  const dir = join(versionsDir(deps.home), `${req.version}-${req.sha256.slice(0, 16)}`);
  try {
    unpack(dir, pkg.files);
  } catch (e) {
    return fail(`cannot unpack into ${dir}: ${describeCause(e)}`);
  }
  deps.report({ version: req.version, state: "switching", reason: null });
  await deps.markHandled(req.seq);
  if (!deps.handOver({ type: "upgrade", version: req.version, dir, worker: join(dir, PACKAGE_WORKER) })) {
    return fail("this worker runs without a monitor: nobody can switch it");
  }
  log.info(`upgrade to ${req.version}: unpacked in ${dir}; the monitor switches to it`);
  return "handed-over";
}

// Into a fresh temporary folder, then renamed into place: a half-written version is
// never where the monitor looks. Paths were checked by the package reader; checked
// again here against the target folder (defence in depth).
function unpack(dir: string, files: { path: string; data: Uint8Array }[]): void {
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  mkdirSync(tmp, { recursive: true, mode: DIR_MODE });
  try {
    for (const f of files) {
      const target = resolve(tmp, f.path);
      const rel = relative(tmp, target);
      if (rel.startsWith("..") || rel.split(sep).includes("..")) throw new Error(`entry ${f.path} escapes the folder`);
      mkdirSync(dirname(target), { recursive: true, mode: DIR_MODE });
      writeFileSync(target, f.data, { mode: FILE_MODE });
    }
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dirname(dir), { recursive: true, mode: DIR_MODE });
    renameSync(tmp, dir); // atomic on one file system (both are under the home)
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
