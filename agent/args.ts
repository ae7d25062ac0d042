// Command-line parsing for `outpost-agent` (pure: argv in, a typed request or UsageError out).
import { parseArgs } from "node:util";
import { UsageError } from "./errors.ts";

export const USAGE = `usage:
  outpost-agent register --server <url> --token <registration token> --name <name> --home <dir> [--insecure] [--ca <file>]
  outpost-agent run --home <dir> [--concurrency N]`;

export type CliRequest =
  | { command: "register"; server: string; token: string; name: string; home: string; insecure: boolean; ca: string | null }
  | { command: "run"; home: string; concurrency: number | null }
  | { command: "help" };

type Options = NonNullable<NonNullable<Parameters<typeof parseArgs>[0]>["options"]>;

// `--token -abc`: a value may start with a dash (tokens are random base64url);
// join every string option with its value so parseArgs never mistakes it for an option.
export function joinStringOptions(args: string[], options: Options): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = args[i].startsWith("--") ? args[i].slice(2) : null;
    if (name !== null && options[name]?.type === "string" && i + 1 < args.length) {
      out.push(`${args[i]}=${args[i + 1]}`);
      i++;
    } else {
      out.push(args[i]);
    }
  }
  return out;
}

function parse(args: string[], options: Options) {
  try {
    return parseArgs({ args: joinStringOptions(args, options), options, strict: true, allowPositionals: false }).values as Record<string, string | boolean | undefined>;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function required(values: Record<string, string | boolean | undefined>, name: string): string {
  const v = values[name];
  if (typeof v !== "string" || v.length === 0) throw new UsageError(`missing --${name}`);
  return v;
}

export function parseConcurrency(raw: string | undefined): number | null {
  if (raw === undefined) return null;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new UsageError(`--concurrency must be an integer from 1 to 64, not ${JSON.stringify(raw)}`);
  return n;
}

export function parseCli(argv: string[]): CliRequest {
  const [command, ...rest] = argv;
  if (command === "help" || command === "--help" || command === "-h") return { command: "help" };
  if (command === "register") {
    const v = parse(rest, {
      server: { type: "string" },
      token: { type: "string" },
      name: { type: "string" },
      home: { type: "string" },
      insecure: { type: "boolean" },
      ca: { type: "string" },
    });
    return {
      command: "register",
      server: required(v, "server"),
      token: required(v, "token"),
      name: required(v, "name"),
      home: required(v, "home"),
      insecure: v.insecure === true,
      ca: typeof v.ca === "string" ? v.ca : null,
    };
  }
  if (command === "run") {
    const v = parse(rest, { home: { type: "string" }, concurrency: { type: "string" } });
    return { command: "run", home: required(v, "home"), concurrency: parseConcurrency(v.concurrency as string | undefined) };
  }
  throw new UsageError(command === undefined ? "missing command" : `unknown command ${JSON.stringify(command)}`);
}
