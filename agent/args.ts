// Command-line parsing for `outpost-agent` (pure: argv in, a typed request or UsageError out).
import { parseArgs } from "node:util";
import { tagList } from "../schema/api.ts";
import { describeZodError } from "../schema/errors.ts";
import { UsageError } from "./errors.ts";
import { parseProxyUrl } from "./proxy.ts";

export const TOKEN_ENV = "OUTPOST_REGISTRATION_TOKEN";

export const USAGE = `usage:
  outpost-agent register --server <url> --name <name> --home <dir> [--tags a,b] [--replace] [--insecure] [--ca <file>]
                         [--proxy http://[user:pass@]host:port]
                         (--token-file <file> | --token <token> | env ${TOKEN_ENV}=<token>)
  outpost-agent run --home <dir> [--concurrency N] [--retention-days N]

  The registration token comes from exactly one place: --token-file (the file's
  content, trimmed), --token, or the environment variable ${TOKEN_ENV}
  (a flag wins over the environment). --token shows it to every user of this
  machine in the process list: prefer the file or the environment.
  --tags a,b: the agent's tags (deployments may target agents by tag; an admin can
  change them later: PATCH /api/v1/agents/:id or the web page).
  --replace: take over the name of a revoked or offline agent (a rebuilt machine): this
  agent gets a new id and credential, the old one is revoked (its history stays under
  its id). Refused while that agent is online: stop or revoke it first.
  --proxy http://[user:pass@]host:port: reach the server only through this HTTP proxy
  (CONNECT tunnels, TLS to the server inside them), kept in settings.json; without it
  HTTPS_PROXY / HTTP_PROXY / NO_PROXY are honoured. Only http:// proxy URLs.
  --retention-days N: keep ended, fully delivered deployments in the journal and
  steps/ for N days (default 7, fractions allowed; settings.json "retentionDays").`;

// Where the registration token comes from; the file is read by `register`.
export type TokenSource = { from: "flag"; token: string } | { from: "file"; path: string } | { from: "env"; token: string };

export type CliRequest =
  | { command: "register"; server: string; token: TokenSource; name: string; home: string; insecure: boolean; ca: string | null; tags: string[]; replace: boolean; proxy: string | null }
  | { command: "run"; home: string; concurrency: number | null; retentionDays: number | null }
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

export function parseRetentionDays(raw: string | undefined): number | null {
  if (raw === undefined) return null;
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(n) || n <= 0) throw new UsageError(`--retention-days must be a positive number of days, not ${JSON.stringify(raw)}`);
  return n;
}

// Exactly one source: two flags are a mistake worth stopping for; a flag next to the
// environment variable is not (the variable may be set for the whole shell).
export function tokenSource(flag: string | undefined, file: string | undefined, env: NodeJS.ProcessEnv): TokenSource {
  if (flag !== undefined && file !== undefined) throw new UsageError("give the registration token once: --token or --token-file, not both");
  if (flag !== undefined) {
    if (flag.length === 0) throw new UsageError("--token is empty");
    return { from: "flag", token: flag };
  }
  if (file !== undefined) {
    if (file.length === 0) throw new UsageError("--token-file is empty");
    return { from: "file", path: file };
  }
  const fromEnv = env[TOKEN_ENV]?.trim();
  if (fromEnv) return { from: "env", token: fromEnv };
  throw new UsageError(`missing registration token: pass --token-file <file>, set ${TOKEN_ENV}, or pass --token <token>`);
}

// `--proxy http://[user:pass@]host:port`: checked here (an https:// proxy is a usage
// error), kept as given for settings.json. The error never repeats the credentials.
export function parseProxyOption(raw: string | undefined): string | null {
  if (raw === undefined) return null;
  const check = parseProxyUrl(raw);
  if (!check.ok) throw new UsageError(`invalid --proxy: ${check.error}`);
  return raw.trim();
}

// `--tags web,eu`: comma-separated, checked by the same rule the server applies.
export function parseTags(raw: string | undefined): string[] {
  if (raw === undefined || raw.trim() === "") return [];
  const tags = raw.split(",").map((t) => t.trim()).filter((t) => t !== "");
  const parsed = tagList.safeParse(tags);
  if (!parsed.success) throw new UsageError(`invalid --tags ${JSON.stringify(raw)}: ${describeZodError(parsed.error)}`);
  return parsed.data;
}

export function parseCli(argv: string[], env: NodeJS.ProcessEnv = process.env): CliRequest {
  const [command, ...rest] = argv;
  if (command === "help" || command === "--help" || command === "-h") return { command: "help" };
  if (command === "register") {
    const v = parse(rest, {
      server: { type: "string" },
      token: { type: "string" },
      "token-file": { type: "string" },
      name: { type: "string" },
      home: { type: "string" },
      insecure: { type: "boolean" },
      ca: { type: "string" },
      tags: { type: "string" },
      replace: { type: "boolean" },
      proxy: { type: "string" },
    });
    return {
      command: "register",
      server: required(v, "server"),
      token: tokenSource(v.token as string | undefined, v["token-file"] as string | undefined, env),
      name: required(v, "name"),
      home: required(v, "home"),
      insecure: v.insecure === true,
      ca: typeof v.ca === "string" ? v.ca : null,
      tags: parseTags(v.tags as string | undefined),
      replace: v.replace === true,
      proxy: parseProxyOption(v.proxy as string | undefined),
    };
  }
  if (command === "run") {
    const v = parse(rest, { home: { type: "string" }, concurrency: { type: "string" }, "retention-days": { type: "string" } });
    return {
      command: "run",
      home: required(v, "home"),
      concurrency: parseConcurrency(v.concurrency as string | undefined),
      retentionDays: parseRetentionDays(v["retention-days"] as string | undefined),
    };
  }
  throw new UsageError(command === undefined ? "missing command" : `unknown command ${JSON.stringify(command)}`);
}
