import { errorResponse } from "../schema/http.ts";

// Every client mistake becomes an HttpError: a 4xx with a readable message and,
// where the client needs it to recover, extra fields (e.g. the server's `head`).

export class HttpError extends Error {
  readonly status: number;
  readonly extra: Record<string, unknown>;
  readonly headers: Record<string, string>;

  constructor(status: number, message: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) {
    super(message);
    this.name = "HttpError";
    this.status = status;
    this.extra = extra;
    this.headers = headers;
  }
}

// Router catch-all: known errors keep their status; anything else is our bug, logged with context.
export function toErrorResponse(err: unknown, request: Request): Response {
  if (err instanceof HttpError) return errorResponse(err.status, err.message, err.extra, err.headers);
  const url = new URL(request.url);
  console.error(`unhandled error in ${request.method} ${url.pathname}:`, err);
  return errorResponse(500, "internal error");
}
