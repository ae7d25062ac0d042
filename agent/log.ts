// Concise log lines with a prefix: `<time> outpost-agent[<part>] <message>`.
import type { LogLevel } from "../schema/api.ts";
import { describeCause } from "./errors.ts";

export type Logger = {
  info(message: string): void;
  debug(message: string): void; // only at log level debug (OUTPOST_AGENT_DEBUG=1, or the agent config)
  warn(message: string, error?: unknown): void;
  error(message: string, error?: unknown): void;
  child(part: string): Logger;
};

// One threshold for the whole process: the agent config (docs/agent-lifecycle.md
// §Config) changes it while the worker runs.
const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };
export const DEFAULT_LOG_LEVEL: LogLevel = process.env.OUTPOST_AGENT_DEBUG === "1" ? "debug" : "info";
let threshold: LogLevel = DEFAULT_LOG_LEVEL;
export function setLogLevel(level: LogLevel): void {
  threshold = level;
}
const shown = (level: LogLevel) => RANK[level] <= RANK[threshold];

export function createLogger(part: string): Logger {
  const prefix = () => `${new Date().toISOString()} outpost-agent[${part}]`;
  const withError = (message: string, error?: unknown) => {
    if (error === undefined) return message;
    const ctx = (error as { context?: Record<string, unknown> })?.context;
    const ctxText = ctx && Object.keys(ctx).length ? ` ${JSON.stringify(ctx)}` : "";
    return `${message}: ${describeCause(error)}${ctxText}`;
  };
  return {
    info: (m) => {
      if (shown("info")) process.stdout.write(`${prefix()} ${m}\n`);
    },
    debug: (m) => {
      if (shown("debug")) process.stdout.write(`${prefix()} debug ${m}\n`);
    },
    warn: (m, e) => {
      if (shown("warn")) process.stderr.write(`${prefix()} WARN ${withError(m, e)}\n`);
    },
    error: (m, e) => process.stderr.write(`${prefix()} ERROR ${withError(m, e)}\n`),
    child: (sub) => createLogger(`${part}/${sub}`),
  };
}
