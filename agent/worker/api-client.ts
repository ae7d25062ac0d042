// HTTPS client of the agent API (/agent/v1): auth header, timeouts, typed errors,
// answers validated against the shared wire schemas.
import { z } from "zod";
import {
  logUploadResponse,
  pullResponse,
  registerResponse,
  reportsResponse,
  type RegisterRequest,
  type RegisterResponse,
  type Report,
} from "../../schema/agent-api.ts";
import { LIMITS } from "../../schema/limits.ts";
import { HttpError, NetworkError, ProtocolError } from "../errors.ts";
import { apiUrl } from "../url-policy.ts";

const REQUEST_TIMEOUT_MS = 30_000;

// Commands are validated one by one by the command intake, so a single bad command
// cannot hide the others (it is stored as rejected): here only the envelope is checked.
export const pullEnvelope = pullResponse.extend({ commands: z.array(z.unknown()).max(LIMITS.commandsPerPull * 10) });
export type PullEnvelope = z.infer<typeof pullEnvelope>;

type RequestOptions = {
  json?: unknown;
  bytes?: Uint8Array;
  timeoutMs?: number;
  signal?: AbortSignal;
  auth?: boolean;
  okStatuses?: number[]; // non-2xx statuses answered with a body instead of an HttpError
};

export class ApiClient {
  readonly server: string;
  readonly credential: string | null;
  readonly #onUnauthorized: ((e: HttpError) => void) | undefined;
  // onUnauthorized: an authenticated request got 401 — the credential is revoked or
  // unknown (docs/protocol.md §Revoke). Called before the error is thrown to the caller.
  constructor(server: string, credential: string | null, opts: { onUnauthorized?: (e: HttpError) => void } = {}) {
    this.server = server;
    this.credential = credential;
    this.#onUnauthorized = opts.onUnauthorized;
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
      headers["content-type"] = "application/octet-stream";
      body = new Uint8Array(opts.bytes); // a copy with its own ArrayBuffer: a valid fetch body
    }
    const timeout = AbortSignal.timeout(opts.timeoutMs ?? REQUEST_TIMEOUT_MS);
    const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
    let res: Response;
    let text: string;
    try {
      res = await fetch(url, { method, headers, body, signal });
      text = await res.text();
    } catch (e) {
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
      const e = new HttpError(method, path, res.status, parsed);
      if (res.status === 401 && headers.authorization !== undefined) this.#onUnauthorized?.(e);
      throw e;
    }
    return { status: res.status, body: parsed };
  }

  async register(req: RegisterRequest): Promise<RegisterResponse> {
    const { body } = await this.request("POST", "/agent/v1/register", { json: req, auth: false });
    return validate(registerResponse, body, "register answer");
  }

  async pull(after: number, waitSeconds: number, signal?: AbortSignal): Promise<PullEnvelope> {
    const { body } = await this.request("GET", `/agent/v1/commands?after=${after}&wait=${waitSeconds}`, {
      timeoutMs: REQUEST_TIMEOUT_MS + waitSeconds * 1000,
      signal,
    });
    return validate(pullEnvelope, body, "pull answer");
  }

  async postReports(reports: Report[], signal?: AbortSignal): Promise<string[]> {
    const { body } = await this.request("POST", "/agent/v1/reports", { json: { reports }, signal });
    return validate(reportsResponse, body, "reports answer").acked;
  }

  // Returns the number of bytes the server holds; `conflict` when it answered 409 (a gap).
  async putLog(stepId: string, offset: number, bytes: Uint8Array, signal?: AbortSignal): Promise<{ length: number; conflict: boolean }> {
    const { status, body } = await this.request("PUT", `/agent/v1/steps/${encodeURIComponent(stepId)}/log?offset=${offset}`, {
      bytes,
      signal,
      okStatuses: [409],
    });
    const length = validate(logUploadResponse, body, `log upload answer (HTTP ${status})`).length;
    return { length, conflict: status === 409 };
  }
}

function validate<T>(schema: z.ZodType<T>, body: unknown, what: string): T {
  const r = schema.safeParse(body);
  if (!r.success) throw new ProtocolError(`unexpected ${what}: ${r.error.issues[0]?.message ?? "invalid"}`, { body: JSON.stringify(body)?.slice(0, 300) });
  return r.data;
}
