// The agent home is private to the agent's user (agent/README.md "Home directory"):
// the decision as a plain function, then against real files in a temp dir.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatUmask, HomePermissionError, parseUmask, planHomeFix, secureHome } from "./home.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "outpost-home-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const mode = (p: string) => statSync(p).mode & 0o777;

describe("home permissions", () => {
  it("plans 0700 for directories and 0600 for files, leaves symlinks alone, and names entries owned by someone else", () => {
    const plan = planHomeFix(
      [
        { path: "/h", kind: "dir", mode: 0o40755, uid: 5 },
        { path: "/h/journal.db", kind: "file", mode: 0o100644, uid: 5 },
        { path: "/h/settings.json", kind: "file", mode: 0o100600, uid: 5 },
        { path: "/h/steps", kind: "dir", mode: 0o40700, uid: 5 },
        { path: "/h/link", kind: "other", mode: 0o120777, uid: 5 },
        { path: "/h/steps/x", kind: "dir", mode: 0o40755, uid: 7 },
      ],
      5,
    );
    expect(plan.chmod).toEqual([{ path: "/h", mode: 0o700 }, { path: "/h/journal.db", mode: 0o600 }]);
    // A program keeps its owner's execute bit (a plug-in's files), never anyone else's.
    const programs = planHomeFix(
      [
        { path: "/h/plugins/p/run", kind: "file", mode: 0o100700, uid: 5 },
        { path: "/h/plugins/p/tool", kind: "file", mode: 0o100755, uid: 5 },
        { path: "/h/plugins/p/data", kind: "file", mode: 0o100640, uid: 5 },
      ],
      5,
    );
    expect(programs.chmod).toEqual([{ path: "/h/plugins/p/tool", mode: 0o700 }, { path: "/h/plugins/p/data", mode: 0o600 }]);
    expect(plan.foreign.map((e) => e.path)).toEqual(["/h/steps/x"]);
  });

  it("makes an existing 0755 home and what an earlier version left private, but not what the steps made in work/", () => {
    const home = join(dir, "home");
    mkdirSync(join(home, "steps", "s1"), { recursive: true, mode: 0o755 });
    mkdirSync(join(home, "work", "app"), { recursive: true, mode: 0o755 });
    chmodSync(home, 0o755);
    for (const f of ["journal.db", "monitor.pid", "steps/s1/output.log", "steps/s1/status", "work/app/index.html"]) {
      writeFileSync(join(home, f), "x");
      chmodSync(join(home, f), 0o644);
    }
    symlinkSync("/etc/hostname", join(home, "steps", "s1", "link"));
    expect(secureHome(home)).toBe(8);
    for (const d of ["", "steps", "steps/s1", "work"]) expect(mode(join(home, d)), d).toBe(0o700);
    for (const f of ["journal.db", "monitor.pid", "steps/s1/output.log", "steps/s1/status"]) expect(mode(join(home, f)), f).toBe(0o600);
    expect(mode(join(home, "work", "app"))).toBe(0o755);
    expect(mode(join(home, "work", "app", "index.html"))).toBe(0o644);
    expect(mode("/etc/hostname")).not.toBe(0o600); // the symlink was not followed
    expect(secureHome(home)).toBe(0);
  });

  it("creates a missing home 0700", () => {
    const home = join(dir, "new", "home");
    secureHome(home);
    expect(mode(home)).toBe(0o700);
  });

  it.skipIf(process.geteuid?.() !== 0)("refuses a home holding a file of another user, saying how to fix it", () => {
    const home = join(dir, "home");
    mkdirSync(home);
    writeFileSync(join(home, "journal.db"), "x");
    chownSync(join(home, "journal.db"), 65534, 65534);
    expect(() => secureHome(home)).toThrow(HomePermissionError);
    expect(() => secureHome(home)).toThrow(new RegExp(`journal.db is owned by uid 65534, not by uid 0 that runs the agent; .*chown -R 0:0 ${home} && chmod 700 ${home}`));
  });

  it("formats and reads umasks as octal", () => {
    expect(formatUmask(0o22)).toBe("0022");
    expect(parseUmask("0022")).toBe(0o22);
    expect(parseUmask("77")).toBe(0o77);
    expect(parseUmask("8")).toBeNull();
    expect(parseUmask("")).toBeNull();
  });
});
