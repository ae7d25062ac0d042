// Typed errors of the agent. Each carries the context a reader of the log needs.
import { pullConflictResponse } from "../schema/agent-api.ts";

// docs/protocol.md §Revoke: the server said this agent is revoked (a 401 with
// code "agent-revoked", or the channel closed with 4003). Retrying cannot help, so
// the worker exits with this code and the monitor, seeing it, stops instead of
// restarting it. Any other 401 is retried: it may come from a proxy or a server
// whose state was reset, and giving up for good on it would strand the machine.
export const EXIT_REVOKED = 78; // EX_CONFIG in sysexits.h
// The worker stops because the server asked for a restart (docs/agent-lifecycle.md
// §Restart): the monitor starts a new one at once, without back-off.
export const EXIT_RESTART = 75; // EX_TEMPFAIL
// The worker stops to let the monitor switch to an upgraded version (§Upgrade).
export const EXIT_UPGRADE = 76;
export const REVOKED_MESSAGE = "this agent was revoked by the server; register it again into a new home (the same name with register --replace)";

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

// The server answered with a non-2xx status. (Not the server's own HttpError of
// worker/http-errors.ts, which is what the Worker throws to answer one.)
export class HttpStatusError extends AgentError {
  readonly status: number;
  readonly serverError: string | null;
  readonly body: unknown;
  constructor(method: string, path: string, status: number, body: unknown) {
    const serverError = typeof (body as { error?: unknown })?.error === "string" ? (body as { error: string }).error : null;
    super(`${method} ${path}: HTTP ${status}${serverError ? `: ${serverError}` : ""}`, { method, path, status });
    this.name = "HttpStatusError";
    this.status = status;
    this.serverError = serverError;
    this.body = body;
  }
}

// An authenticated request answered 401 WITHOUT the revoked code: a proxy's own
// 401, a restarted server, a credential it does not know (yet). Retried with
// back-off; the agent stops only on an explicit revocation.
export class CredentialRefusedError extends HttpStatusError {
  constructor(method: string, path: string, body: unknown) {
    super(method, path, 401, body);
    this.name = "CredentialRefusedError";
    this.message = `${this.message} (the server refused this agent's credential without saying it is revoked: retrying)`;
  }
}

// A pull answered 409: `after` is beyond the server's head, so this agent's journal
// claims commands the server never issued (its state was reset, or restored from an
// older copy). The agent must not lower `after` to match — that would acknowledge
// and run again commands it may hold — so it waits for the server with back-off.
export class CommandHeadBehindError extends HttpStatusError {
  readonly head: number | null;
  readonly after: number;
  constructor(method: string, path: string, after: number, body: unknown) {
    super(method, path, 409, body);
    this.name = "CommandHeadBehindError";
    this.head = pullConflictResponse.safeParse(body).data?.head ?? null;
    this.after = after;
    this.message = `${this.message} (the server's command head ${this.head ?? "?"} is behind this agent's lastSeq ${after}: server state reset or restored? lastSeq is kept; retrying)`;
  }
}

// The server answered 3xx. The agent never follows a redirect: following one could
// take it from https to http, or to another host, past the URL policy. The operator
// must point --server at the final address.
export class RedirectError extends AgentError {
  readonly status: number;
  readonly location: string | null;
  constructor(method: string, path: string, status: number, location: string | null) {
    super(
      `${method} ${path}: the server redirected (HTTP ${status}) to ${location ?? "(no Location header)"}; the agent does not follow redirects: --server (settings.json "server") must name the final address`,
      { method, path, status, location },
    );
    this.name = "RedirectError";
    this.status = status;
    this.location = location;
  }
}

// The server's answer (2xx or not) was not what the wire schema allows, or too large
// to read. Never carries the body: a pull's body holds command text.
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

// The one decision of every HTTP loop (commands, reports, log chunks): retry with
// back-off, or not. Retried: what may pass by itself later — network trouble, server
// trouble (5xx, 408), rate limits (429), a 401 that is not a revocation (a proxy's
// own, a server whose state was reset), a redirect (a misconfigured proxy can be
// fixed while the agent runs), an answer we could not read (ProtocolError), a pull
// beyond the server's head. Not retried with back-off: the server refused what was
// sent (any other 4xx — each loop then does its own thing with it: a report batch is
// split or held, a log upload given up), the revoked 401 (the worker stops), and
// anything that is not an HTTP failure (a journal error).
export function shouldRetry(e: unknown): boolean {
  if (e instanceof NetworkError || e instanceof ProtocolError || e instanceof RedirectError) return true;
  if (e instanceof CredentialRefusedError || e instanceof CommandHeadBehindError) return true;
  if (e instanceof HttpStatusError) return e.status >= 500 || e.status === 408 || e.status === 429;
  return false;
}
