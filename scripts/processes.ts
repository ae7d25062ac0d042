// Child processes of the local launchers. Each child gets its own process group
// so that stopping it reaches everything it started (wrangler → its CLI →
// workerd; the agent monitor → its worker), even when one of them has died.
import { spawn, type SpawnOptions } from "node:child_process";
import { constants } from "node:os";

export type Child = { pid: number; exited: Promise<number>; stop(graceMs?: number): Promise<number> };

export function startChild(cmd: string, args: string[], opts: SpawnOptions = {}): Child {
  const child = spawn(cmd, args, { stdio: "inherit", ...opts, detached: true });
  const exited = new Promise<number>((resolve) =>
    child.on("exit", (code, signal) => resolve(code ?? 128 + (signal ? constants.signals[signal] : 0))),
  );
  const signalGroup = (sig: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, sig);
    } catch {
      // the whole group is gone already
    }
  };
  // If this launcher exits by any path Node still runs, take the group with it.
  process.on("exit", () => signalGroup("SIGKILL"));
  return {
    pid: child.pid!,
    exited,
    async stop(graceMs = 10_000) {
      signalGroup("SIGTERM");
      const timer = setTimeout(() => signalGroup("SIGKILL"), graceMs);
      const code = await exited;
      clearTimeout(timer);
      signalGroup("SIGKILL"); // members that outlived the leader
      return code;
    },
  };
}

export async function runToEnd(cmd: string, args: string[], opts: SpawnOptions = {}) {
  const c = startChild(cmd, args, { stdio: ["ignore", "inherit", "inherit"], ...opts });
  const code = await c.exited;
  if (code !== 0) throw new Error(`${cmd} ${args.join(" ")} exited with ${code}`);
}

// Ctrl-C, SIGTERM and SIGHUP stop the children in reverse start order, then exit.
export function stopOnSignals(children: () => Child[]) {
  let stopping = false;
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(sig, async () => {
      if (stopping) return;
      stopping = true;
      for (const c of [...children()].reverse()) await c.stop();
      process.exit(0);
    });
  }
}
