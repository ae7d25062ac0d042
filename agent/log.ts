// Concise log lines with a prefix: `<time> outpost-agent[<part>] <message>`.
import { describeCause } from "./errors.ts";

export type Logger = {
  info(message: string): void;
  debug(message: string): void; // only with OUTPOST_AGENT_DEBUG=1
  warn(message: string, error?: unknown): void;
  error(message: string, error?: unknown): void;
  child(part: string): Logger;
};

const DEBUG = process.env.OUTPOST_AGENT_DEBUG === "1";

export function createLogger(part: string): Logger {
  const prefix = () => `${new Date().toISOString()} outpost-agent[${part}]`;
  const withError = (message: string, error?: unknown) => {
    if (error === undefined) return message;
    const ctx = (error as { context?: Record<string, unknown> })?.context;
    const ctxText = ctx && Object.keys(ctx).length ? ` ${JSON.stringify(ctx)}` : "";
    return `${message}: ${describeCause(error)}${ctxText}`;
  };
  return {
    info: (m) => process.stdout.write(`${prefix()} ${m}\n`),
    debug: (m) => {
      if (DEBUG) process.stdout.write(`${prefix()} debug ${m}\n`);
    },
    warn: (m, e) => process.stderr.write(`${prefix()} WARN ${withError(m, e)}\n`),
    error: (m, e) => process.stderr.write(`${prefix()} ERROR ${withError(m, e)}\n`),
    child: (sub) => createLogger(`${part}/${sub}`),
  };
}
