// `outpost-agent` command line: register | run. Usage errors exit 2.
import { parseCli, USAGE } from "./args.ts";
import { describeCause, UsageError } from "./errors.ts";
import { runMonitor } from "./monitor/monitor.ts";
import { register } from "./register.ts";

export async function main(argv: string[]): Promise<number> {
  try {
    const req = parseCli(argv);
    switch (req.command) {
      case "help":
        process.stdout.write(USAGE + "\n");
        return 0;
      case "register":
        return await register(req);
      case "run":
        return await runMonitor({ home: req.home, concurrency: req.concurrency });
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
