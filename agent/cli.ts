// `outpost-agent` command line: register | run. Usage errors exit 2.
// Each command loads only its own code (`await import`): `run` keeps a long-lived
// monitor process, which should not hold registration's code (an API client, key
// pinning) for its whole life, nor `register` the monitor's.
import { parseCli, USAGE } from "./args.ts";
import { describeCause, UsageError } from "./errors.ts";
import { AGENT_UMASK } from "./home.ts";

export async function main(argv: string[]): Promise<number> {
  // Everything the agent writes is private from the first file on; the umask it was
  // started with is kept for the steps (agent/home.ts).
  const startUmask = process.umask(AGENT_UMASK);
  try {
    const req = parseCli(argv);
    switch (req.command) {
      case "help":
        process.stdout.write(USAGE + "\n");
        return 0;
      case "register": {
        const { register } = await import("./register.ts");
        return await register(req);
      }
      case "run": {
        const { runMonitor } = await import("./monitor/monitor.ts");
        return await runMonitor({ home: req.home, concurrency: req.concurrency, retentionDays: req.retentionDays, stepUmask: startUmask });
      }
    }
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`outpost-agent: ${e.message}\n${USAGE}\n`);
      return 2;
    }
    process.stderr.write(`outpost-agent: ${describeCause(e)}\n`);
    return 1;
  }
}

export function runCli(argv: string[]): void {
  main(argv).then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`outpost-agent: unexpected error: ${(e as Error)?.stack ?? e}\n`);
      process.exit(1);
    },
  );
}
