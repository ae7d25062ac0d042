// Publishes the plug-ins shipped in plugins/ (every sub-folder holding an
// outpost-plugin.json) to a running server: `npm start` calls it once the server
// answers. Packing is deterministic (scripts/pack-plugin.ts), so an unchanged plug-in
// is a 200 and costs nothing; one whose files changed while its version did not is a
// 409, reported and left as the server has it, since versions are immutable.
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { MANIFEST_FILE } from "../schema/plugin.ts";
import { packAndCheck } from "./pack-plugin.ts";

const projectRoot = join(import.meta.dirname, "..");

export type PublishSummary = {
  published: string[]; // "id@version", new on the server
  unchanged: string[]; // already there with the same bytes
  conflicts: string[]; // there with other bytes: changed without a version bump
  failed: { plugin: string; error: string }[]; // by folder name when it could not be packed
};

export async function publishPlugins(base: string, adminToken: string, dir = join(projectRoot, "plugins")): Promise<PublishSummary> {
  const summary: PublishSummary = { published: [], unchanged: [], conflicts: [], failed: [] };
  if (!existsSync(dir)) return summary;
  const folders = readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(dir, d.name, MANIFEST_FILE)))
    .map((d) => d.name)
    .sort();
  for (const folder of folders) {
    let packed;
    try {
      packed = await packAndCheck(join(dir, folder));
    } catch (e) {
      const error = e instanceof Error ? e.message : String(e);
      console.warn(`plugin ${folder}: not published: ${error}`);
      summary.failed.push({ plugin: folder, error });
      continue;
    }
    const { id, version } = packed.manifest;
    const name = `${id}@${version}`;
    try {
      const res = await fetch(`${base}/api/v1/plugins`, {
        method: "POST",
        headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/gzip" },
        body: packed.bytes as Uint8Array<ArrayBuffer>,
        signal: AbortSignal.timeout(30_000),
      });
      const text = await res.text();
      if (res.status === 201) summary.published.push(name);
      else if (res.status === 200) summary.unchanged.push(name);
      else if (res.status === 409) {
        console.warn(`plugin ${id} version ${version} changed without a version bump; not published`);
        summary.conflicts.push(name);
      } else throw new Error(`HTTP ${res.status} ${errorOf(text)}`);
    } catch (e) {
      const error = e instanceof Error ? e.message : String(e);
      console.warn(`plugin ${id} version ${version}: not published: ${error}`);
      summary.failed.push({ plugin: name, error });
    }
  }
  return summary;
}

function errorOf(text: string): string {
  try {
    return (JSON.parse(text) as { error?: string }).error ?? text;
  } catch {
    return text.slice(0, 500);
  }
}

export function describePublish(s: PublishSummary): string {
  const parts = [`${s.published.length} published`, `${s.unchanged.length} unchanged`];
  if (s.conflicts.length) parts.push(`${s.conflicts.length} changed without a version bump (not published)`);
  if (s.failed.length) parts.push(`${s.failed.length} failed`);
  return `Plug-ins: ${parts.join(", ")}`;
}
