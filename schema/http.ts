// The wire form of every JSON answer of the server, and of every error: `{error}` plus
// whatever fields the client needs to recover (`head`, `length`, `code`, …). Both the
// Worker and the Durable Objects answer through these.
export function json(body: unknown, status = 200, headers: HeadersInit = {}): Response {
  const h = new Headers(headers);
  h.set("content-type", "application/json; charset=utf-8");
  return new Response(JSON.stringify(body), { status, headers: h });
}

export function errorResponse(status: number, message: string, extra: Record<string, unknown> = {}, headers: HeadersInit = {}): Response {
  return json({ ...extra, error: message }, status, headers);
}
