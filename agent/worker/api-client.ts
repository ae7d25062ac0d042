// HTTPS client of the agent API (/agent/v1): auth header, timeouts, typed errors,
// answers validated against the shared wire schemas, bodies read with a size cap,
// redirects never followed. Through the proxy policy's proxy when one applies
// (agent/proxy.ts): every request, registration and package downloads included.
// Log chunks (up to LIMITS.logChunkBytes each) go over a connection pool of their own
// (bulkFetchFor), so that reports, pulls and acknowledgements never queue behind them.
import { z } from "zod";
import {
  isRevokedAnswer,
  LOG_CONTENT_TYPE,
  pullResponse,
  registerResponse,
  reportsResponse,
  stepSecretsMissing,
  stepSecretsResponse,
  type RegisterRequest,
  type RegisterResponse,
  type Report,
  type ReportsRequest,
} from "../../schema/agent-api.ts";
import { LIMITS } from "../../schema/limits.ts";
import { PLUGIN_LIMITS } from "../../schema/plugin.ts";
import { CommandHeadBehindError, CredentialRefusedError, HttpStatusError, NetworkError, ProtocolError, RedirectError } from "../errors.ts";
import { bulkFetchFor, fetchFor, proxyPolicy, type FetchLike, type ProxyPolicy } from "../proxy.ts";
import { apiUrl } from "../url-policy.ts";
import { MiB, readCappedBytes, readCappedText } from "./capped-body.ts";

const REQUEST_TIMEOUT_MS = 30_000;
// A pull carries up to 100 commands of up to 64 KiB each (6.25 MiB) plus its envelope.
export const PULL_BODY_CAP = 8 * MiB;
// Every other answer is a small JSON object (or a proxy's error page).
export const DEFAULT_BODY_CAP = 1 * MiB;

// Commands are validated one by one by the command intake, so a single bad command
// cannot hide the others (it is stored as rejected): here only the envelope is checked.
export const pullEnvelope = pullResponse.extend({ commands: z.array(z.unknown()).max(LIMITS.commandsPerPull * 10) });
export type PullEnvelope = z.infer<typeof pullEnvelope>;

export type LogAnswer = { status: number; body: unknown };

type RequestOptions = {
  json?: unknown;
  bytes?: Uint8Array;
  timeoutMs?: number;
  signal?: AbortSignal;
  auth?: boolean;
  okStatuses?: number[]; // non-2xx statuses answered with a body instead of an HttpStatusError
  maxBodyBytes?: number;
  bulk?: boolean; // over the bulk connection pool (log chunks), not the control one
};

export class ApiClient {
  readonly server: string;
  readonly credential: string | null;
  readonly #onRevoked: ((e: HttpStatusError) => void) | undefined;
  readonly #fetch: FetchLike;
  readonly #bulkFetch: FetchLike;
  // onRevoked: an authenticated request got the server's explicit revoked answer (401
  // with code "agent-revoked", docs/protocol.md §Revoke). Called before the error is
  // thrown to the caller. Any other 401 is a CredentialRefusedError, retried.
  // proxy: how requests reach the server; by default the environment's HTTPS_PROXY /
  // HTTP_PROXY / NO_PROXY, so a client made without one does not go around a proxy.
  constructor(server: string, credential: string | null, opts: { onRevoked?: (e: HttpStatusError) => void; proxy?: ProxyPolicy } = {}) {
    this.server = server;
    this.credential = credential;
    this.#onRevoked = opts.onRevoked;
    const policy = opts.proxy ?? proxyPolicy(null, process.env);
    this.#fetch = fetchFor(policy, server);
    this.#bulkFetch = bulkFetchFor(policy, server);
  }

  async request(method: string, path: string, opts: RequestOptions = {}): Promise<{ status: number; body: unknown }> {
    const url = apiUrl(this.server, path);
    const headers: Record<string, string> = {};
    if (opts.auth !== false && this.credential) headers.authorization = `Bearer ${this.credential}`;
    let body: string | Uint8Array<ArrayBuffer> | undefined;
    if (opts.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(opts.json);
    } else if (opts.bytes !== undefined) {
      headers["content-type"] = LOG_CONTENT_TYPE;
      // The bulk pool sends a view as it is (a log chunk is megabytes: not copied);
      // fetch gets a copy with its own ArrayBuffer.
      body = opts.bulk && opts.bytes.buffer instanceof ArrayBuffer ? (opts.bytes as Uint8Array<ArrayBuffer>) : new Uint8Array(opts.bytes);
    }
    const timeout = AbortSignal.timeout(opts.timeoutMs ?? REQUEST_TIMEOUT_MS);
    const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
    let res: Response;
    try {
      res = await (opts.bulk ? this.#bulkFetch : this.#fetch)(url, { method, headers, body, signal, redirect: "manual" });
    } catch (e) {
      throw new NetworkError(method, url, e);
    }
    if (res.status >= 300 && res.status < 400) {
      await res.body?.cancel().catch(() => undefined); // nothing in a redirect's body is wanted
      throw new RedirectError(method, path, res.status, res.headers.get("location"));
    }
    let text: string;
    try {
      text = await readCappedText(res, opts.maxBodyBytes ?? DEFAULT_BODY_CAP, `${method} ${path}`);
    } catch (e) {
      if (e instanceof ProtocolError) throw e;
      throw new NetworkError(method, url, e);
    }
    let parsed: unknown = text;
    if (text.length > 0) {
      try {
        parsed = JSON.parse(text);
      } catch {
        /* not JSON: keep the text */
      }
    }
    if (!res.ok && !(opts.okStatuses ?? []).includes(res.status)) {
      if (res.status === 401 && headers.authorization !== undefined) {
        if (!isRevokedAnswer(res.status, parsed)) throw new CredentialRefusedError(method, path, parsed);
        const e = new HttpStatusError(method, path, res.status, parsed);
        this.#onRevoked?.(e);
        throw e;
      }
      throw new HttpStatusError(method, path, res.status, parsed);
    }
    return { status: res.status, body: parsed };
  }

  // A binary answer (a package), at most `cap` bytes; any non-2xx is an HttpStatusError.
  async requestBytes(path: string, cap: number, signal?: AbortSignal): Promise<Uint8Array> {
    const url = apiUrl(this.server, path);
    const timeout = AbortSignal.timeout(REQUEST_TIMEOUT_MS * 4);
    let res: Response;
    try {
      res = await this.#fetch(url, { headers: this.credential ? { authorization: `Bearer ${this.credential}` } : {}, signal: signal ? AbortSignal.any([signal, timeout]) : timeout, redirect: "manual" });
    } catch (e) {
      throw new NetworkError("GET", url, e);
    }
    if (!res.ok) {
      const text = await readCappedText(res, DEFAULT_BODY_CAP, `GET ${path}`).catch(() => "");
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* not JSON */
      }
      if (res.status >= 300 && res.status < 400) throw new RedirectError("GET", path, res.status, res.headers.get("location"));
      if (res.status === 401 && !isRevokedAnswer(res.status, parsed)) throw new CredentialRefusedError("GET", path, parsed);
      const e = new HttpStatusError("GET", path, res.status, parsed);
      if (res.status === 401) this.#onRevoked?.(e);
      throw e;
    }
    try {
      return await readCappedBytes(res, cap, `GET ${path}`);
    } catch (e) {
      if (e instanceof ProtocolError) throw e;
      throw new NetworkError("GET", url, e);
    }
  }

  // The values of the secrets a step names, for this step only (docs/agent-api.md).
  async stepSecrets(stepId: string, signal?: AbortSignal): Promise<StepSecretsAnswer> {
    const { status, body } = await this.request("POST", `/agent/v1/steps/${encodeURIComponent(stepId)}/secrets`, { signal, okStatuses: [404, 410, 422] });
    if (status === 404) return { kind: "unknown" };
    if (status === 410) return { kind: "ended" };
    if (status === 422) return { kind: "missing", missing: validate(stepSecretsMissing, body, "secrets refusal").missing };
    return { kind: "secrets", secrets: validate(stepSecretsResponse, body, "secrets answer").secrets };
  }

  // A plug-in package's bytes; the caller checks them against the sha256 its command names.
  pluginPackage(id: string, version: string, signal?: AbortSignal): Promise<Uint8Array> {
    return this.requestBytes(`/agent/v1/plugins/${encodeURIComponent(id)}/${encodeURIComponent(version)}`, PLUGIN_LIMITS.packageBytes, signal);
  }

  async register(req: RegisterRequest): Promise<RegisterResponse> {
    const { body } = await this.request("POST", "/agent/v1/register", { json: req, auth: false });
    return validate(registerResponse, body, "register answer");
  }

  // A 409 (after > head) is a CommandHeadBehindError: retried, lastSeq never lowered.
  async pull(after: number, waitSeconds: number, signal?: AbortSignal): Promise<PullEnvelope> {
    const path = `/agent/v1/commands?after=${after}&wait=${waitSeconds}`;
    const { status, body } = await this.request("GET", path, {
      timeoutMs: REQUEST_TIMEOUT_MS + waitSeconds * 1000,
      signal,
      maxBodyBytes: PULL_BODY_CAP,
      okStatuses: [409],
    });
    if (status === 409) throw new CommandHeadBehindError("GET", path, after, body);
    return validate(pullEnvelope, body, "pull answer");
  }

  async postReports(reports: Report[], signal?: AbortSignal): Promise<string[]> {
    // sentAt is read as late as possible: the server takes (its receive time − sentAt)
    // as this machine's clock offset, so time spent before sending would count as skew.
    const request: ReportsRequest = { reports, sentAt: Date.now() };
    const { body } = await this.request("POST", "/agent/v1/reports", { json: request, signal });
    return validate(reportsResponse, body, "reports answer").acked;
  }

  // The server's answer to a log chunk, for uploadOutcome (agent/worker/upload-outcome.ts)
  // to read: 2xx, and the refusals that are part of the upload protocol — 409 (a gap),
  // 410 (the step has ended there), 413 (past the per-step cap). Anything else throws.
  // Over the bulk connection pool: a chunk of megabytes holds up no control request.
  async putLog(stepId: string, offset: number, bytes: Uint8Array, signal?: AbortSignal): Promise<LogAnswer> {
    return this.request("PUT", `/agent/v1/steps/${encodeURIComponent(stepId)}/log?offset=${offset}`, {
      bytes,
      signal,
      okStatuses: [409, 410, 413],
      bulk: true,
    });
  }
}

export type StepSecretsAnswer =
  | { kind: "secrets"; secrets: Record<string, string> }
  | { kind: "missing"; missing: string[] } // named secrets no longer exist: the step fails naming them
  | { kind: "ended" } // 410: the server no longer waits for this step
  | { kind: "unknown" }; // 404: not a step of this agent, as far as the server knows

// The error names what was wrong and where, never the body: a pull's body is
// command text, which must not reach the agent's log.
export function validate<T>(schema: z.ZodType<T>, body: unknown, what: string): T {
  const r = schema.safeParse(body);
  if (!r.success) {
    const issue = r.error.issues[0];
    const where = issue && issue.path.length > 0 ? `${issue.path.join(".")}: ` : "";
    // zod's messages name what was expected, not what came, except for unknown keys.
    const problem = !issue ? "invalid" : issue.code === "unrecognized_keys" ? "unrecognized keys" : issue.message;
    throw new ProtocolError(`unexpected ${what}: ${where}${problem}`, { answerType: Array.isArray(body) ? "array" : typeof body });
  }
  return r.data;
}
