// Typed errors of the agent. Each carries the context a reader of the log needs.

// docs/protocol.md §Revoke: the server refused this agent's credential (a 401, or
// the channel closed with 4003). Retrying cannot help, so the worker exits with
// this code and the monitor, seeing it, stops instead of restarting it.
export const EXIT_REVOKED = 78; // EX_CONFIG in sysexits.h
export const REVOKED_MESSAGE = "this agent's credential was revoked or is unknown to the server; register again";

export class AgentError extends Error {
  readonly context: Record<string, unknown>;
  constructor(message: string, context: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "AgentError";
    this.context = context;
  }
}

// Bad command line: the CLI prints usage and exits 2.
export class UsageError extends AgentError {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

// Missing or unreadable settings / credential in the agent home.
export class SettingsError extends AgentError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, context, options);
    this.name = "SettingsError";
  }
}

// The request never got an HTTP answer (DNS, refused, reset, TLS, timeout).
export class NetworkError extends AgentError {
  constructor(method: string, url: string, cause: unknown) {
    super(`${method} ${url}: ${describeCause(cause)}`, {}, { cause });
    this.name = "NetworkError";
  }
}

// The server answered with a non-2xx status.
export class HttpError extends AgentError {
  readonly status: number;
  readonly serverError: string | null;
  readonly body: unknown;
  constructor(method: string, path: string, status: number, body: unknown) {
    const serverError = typeof (body as { error?: unknown })?.error === "string" ? (body as { error: string }).error : null;
    super(`${method} ${path}: HTTP ${status}${serverError ? `: ${serverError}` : ""}`, { method, path, status });
    this.name = "HttpError";
    this.status = status;
    this.serverError = serverError;
    this.body = body;
  }
  get isClientError(): boolean {
    return this.status >= 400 && this.status < 500;
  }
}

// The server answered 2xx with a body that does not match the wire schema.
export class ProtocolError extends AgentError {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super(message, context);
    this.name = "ProtocolError";
  }
}

export function describeCause(e: unknown): string {
  if (e instanceof NetworkError) return e.message; // already names its cause
  if (e instanceof AgentError) {
    const cause = (e as { cause?: unknown }).cause;
    return cause === undefined ? e.message : `${e.message}: ${describeCause(cause)}`;
  }
  if (e instanceof Error) {
    const inner = (e as { cause?: unknown }).cause;
    const innerText = inner instanceof Error ? `: ${(inner as NodeJS.ErrnoException).code ?? inner.message}` : "";
    return `${e.message}${innerText}`;
  }
  return String(e);
}

// Retrying makes sense for these (network trouble, server trouble, rate limits); not for other 4xx.
export function isTransient(e: unknown): boolean {
  if (e instanceof NetworkError) return true;
  if (e instanceof HttpError) return e.status >= 500 || e.status === 408 || e.status === 429;
  return false;
}
