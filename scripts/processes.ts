// Child processes of the local launchers. They stay in the launcher's process
// group on purpose: Ctrl-C in a terminal, or a supervisor (or test) that kills
// the launcher's group — even with SIGKILL — then reaches wrangler, workerd and
// the agent too. A signal sent to the launcher alone is passed on to them.
import { spawn, type SpawnOptions } from "node:child_process";
import { constants } from "node:os";
import type { Readable } from "node:stream";

export type Child = {
  pid: number;
  exited: Promise<number>;
  stdout: Readable | null;
  stderr: Readable | null;
  stop(graceMs?: number): Promise<number>;
};

export function startChild(cmd: string, args: string[], opts: SpawnOptions = {}): Child {
  const child = spawn(cmd, args, { stdio: "inherit", ...opts });
  const exited = new Promise<number>((resolve) =>
    child.on("exit", (code, signal) => resolve(code ?? 128 + (signal ? constants.signals[signal] : 0))),
  );
  const running = () => child.exitCode === null && child.signalCode === null;
  // If this launcher exits by any path Node still runs, take the child with it.
  process.on("exit", () => running() && child.kill("SIGKILL"));
  return {
    pid: child.pid!,
    exited,
    stdout: child.stdout,
    stderr: child.stderr,
    async stop(graceMs = 10_000) {
      if (running()) child.kill("SIGTERM");
      const timer = setTimeout(() => running() && child.kill("SIGKILL"), graceMs);
      const code = await exited;
      clearTimeout(timer);
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
