// The agent home: settings.json, credential.json, pid files, journal, steps (all
// private to the agent's user: agent/home.ts).
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { z } from "zod";
import { SettingsError } from "./errors.ts";

export const settingsSchema = z.object({
  server: z.string().min(1),
  name: z.string().min(1),
  agentId: z.string().min(1),
  insecure: z.boolean().default(false),
  ca: z.string().nullable().default(null), // extra CA certificate file (PEM), absolute path
  // `register --proxy`: http://[user:pass@]host:port, every connection goes through it
  // (agent/proxy.ts). May hold the proxy's password: this file is 0600 in a 0700 home,
  // like credential.json, and the value is never logged (only http://host:port).
  proxy: z.string().min(1).nullable().default(null),
  maxConcurrentDeployments: z.int().min(1).max(64).default(4),
  // How long ended, fully delivered deployments stay in the journal and steps/ (days;
  // `run --retention-days` overrides it). Default RETENTION_DAYS_DEFAULT.
  retentionDays: z.number().positive().finite().optional(),
  registeredAt: z.string().optional(),
  version: z.string().optional(), // agent version at registration
});
export type Settings = z.infer<typeof settingsSchema>;

export const homePaths = (home: string) => {
  const h = resolve(home);
  return {
    home: h,
    settings: join(h, "settings.json"),
    credential: join(h, "credential.json"),
    // The release keys pinned at registration (agent/release-keys.ts), 0600.
    releaseKeys: join(h, "release-keys.pem"),
    monitorPid: join(h, "monitor.pid"),
    workerPid: join(h, "worker.pid"),
    journal: join(h, "journal.db"),
    steps: join(h, "steps"),
    work: join(h, "work"),
  };
};

// Writes a file atomically (temp file + rename) with the given mode.
export function writeFileAtomic(path: string, content: string, mode = 0o600): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, content, { mode });
  renameSync(tmp, path);
}

export function writeSettings(home: string, settings: Settings): void {
  mkdirSync(home, { recursive: true, mode: 0o700 });
  writeFileAtomic(homePaths(home).settings, JSON.stringify(settings, null, 2) + "\n");
}

export function writeCredential(home: string, credential: string): void {
  mkdirSync(home, { recursive: true, mode: 0o700 });
  writeFileAtomic(homePaths(home).credential, JSON.stringify({ credential }) + "\n");
}

function readJson(path: string, what: string): unknown {
  if (!existsSync(path)) throw new SettingsError(`${what} not found at ${path}: register the agent first (outpost-agent register)`, { path });
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new SettingsError(`cannot read ${what} at ${path}`, { path }, { cause: e });
  }
}

export function readSettings(home: string): Settings {
  const path = homePaths(home).settings;
  const parsed = settingsSchema.safeParse(readJson(path, "settings"));
  if (!parsed.success) throw new SettingsError(`invalid settings in ${path}: ${parsed.error.issues[0]?.message}`, { path });
  return parsed.data;
}

export function readCredential(home: string): string {
  const path = homePaths(home).credential;
  const parsed = z.object({ credential: z.string().min(1) }).safeParse(readJson(path, "credential"));
  if (!parsed.success) throw new SettingsError(`invalid credential file ${path}`, { path });
  return parsed.data.credential;
}

export function writePidFile(path: string, pid = process.pid): void {
  writeFileAtomic(path, `${pid}\n`, 0o600);
}

export function readPidFile(path: string): number | null {
  try {
    const n = Number.parseInt(readFileSync(path, "utf8").trim(), 10);
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

// Removes a pid file only if it still names `pid` (a successor may have replaced it).
export function removePidFile(path: string, pid: number): void {
  if (readPidFile(path) === pid) rmSync(path, { force: true });
}
