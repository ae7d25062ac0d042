// The agent home is private to the user the agent runs as: it holds the
// credential, the journal (the text of every command this machine ran) and the
// steps' output, any of which may carry secrets. The home and every directory in
// it are 0700 and every file 0600, whatever the umask and whatever an earlier
// version left behind. The contents of work/ (the steps' working directory: files
// deployments made for their own users) keep the modes the steps gave them.
import { chmodSync, lstatSync, mkdirSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { AgentError } from "./errors.ts";

export const DIR_MODE = 0o700;
export const FILE_MODE = 0o600;
// The agent's own processes create everything private; steps get the umask the
// agent was started with (agent/steps/shell-step.ts), so a deployment's files keep
// the permissions their users expect.
export const AGENT_UMASK = 0o077;
const WORK_DIR = "work";

export class HomePermissionError extends AgentError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, context, options);
    this.name = "HomePermissionError";
  }
}

export type HomeEntry = { path: string; kind: "dir" | "file" | "other"; mode: number; uid: number };
export type HomePlan = { chmod: { path: string; mode: number }[]; foreign: HomeEntry[] };

// What must change for the home to be private to `uid`. Entries owned by someone
// else cannot be fixed here (and whoever owns one could change what the agent
// reads or runs). Symlinks and other special files are never chmod-ed: chmod
// follows a symlink out of the home.
// Private to the owner, who keeps the execute bit (a plug-in's programs need it).
const privateFileMode = (mode: number): number => FILE_MODE | (mode & 0o100);

export function planHomeFix(entries: readonly HomeEntry[], uid: number): HomePlan {
  const plan: HomePlan = { chmod: [], foreign: [] };
  for (const e of entries) {
    if (e.uid !== uid) plan.foreign.push(e);
    else if (e.kind === "dir" && (e.mode & 0o7777) !== DIR_MODE) plan.chmod.push({ path: e.path, mode: DIR_MODE });
    else if (e.kind === "file" && (e.mode & 0o7777) !== privateFileMode(e.mode)) plan.chmod.push({ path: e.path, mode: privateFileMode(e.mode) });
  }
  return plan;
}

// The home and everything in it, work/ itself included but not what work/ holds.
export function listHome(home: string): HomeEntry[] {
  const root = resolve(home);
  const out: HomeEntry[] = [];
  const visit = (path: string) => {
    let st;
    try {
      st = lstatSync(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return; // removed meanwhile (a step's status.tmp)
      throw e;
    }
    const kind = st.isDirectory() ? "dir" : st.isFile() ? "file" : "other";
    out.push({ path, kind, mode: st.mode, uid: st.uid });
    if (kind !== "dir" || path === join(root, WORK_DIR)) return;
    for (const name of readdirSync(path)) visit(join(path, name));
  };
  visit(root);
  return out;
}

function fixHint(home: string): string {
  const who = `${process.geteuid?.() ?? "<uid>"}:${process.getegid?.() ?? "<gid>"}`;
  return `run the agent as the user that owns ${home}, or fix it (as root) with: chown -R ${who} ${home} && chmod 700 ${home}`;
}

// Creates the home if needed and makes it private. Returns how many entries were fixed.
export function secureHome(home: string): number {
  const root = resolve(home);
  const uid = process.geteuid?.();
  try {
    mkdirSync(root, { recursive: true, mode: DIR_MODE });
    if (uid === undefined) return 0; // not POSIX: no modes to fix
    const plan = planHomeFix(listHome(root), uid);
    if (plan.foreign.length > 0) {
      const f = plan.foreign[0];
      const more = plan.foreign.length > 1 ? ` (and ${plan.foreign.length - 1} more)` : "";
      throw new HomePermissionError(
        `refusing to use agent home ${root}: ${f.path}${more} is owned by uid ${f.uid}, not by uid ${uid} that runs the agent; ${fixHint(root)}`,
        { home: root, path: f.path, owner: f.uid },
      );
    }
    for (const c of plan.chmod) chmodSync(c.path, c.mode);
    return plan.chmod.length;
  } catch (e) {
    if (e instanceof HomePermissionError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EPERM" || code === "EACCES") {
      throw new HomePermissionError(`refusing to use agent home ${root}: cannot make it private to this user (${code}); ${fixHint(root)}`, { home: root }, { cause: e });
    }
    throw new HomePermissionError(`cannot check the permissions of agent home ${root}`, { home: root }, { cause: e });
  }
}

export function formatUmask(mask: number): string {
  return mask.toString(8).padStart(4, "0");
}

export function parseUmask(text: string): number | null {
  return /^[0-7]{1,4}$/.test(text) ? Number.parseInt(text, 8) & 0o777 : null;
}
