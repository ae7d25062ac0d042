// Headers on every answer of the Worker: no content sniffing (a log served as
// text/plain stays text), no framing, no script of any kind in an API answer. The web
// page's own files get theirs from web/_headers (served by the assets binding before
// the Worker runs).
export const API_SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "x-content-type-options": "nosniff",
  "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
  "referrer-policy": "no-referrer",
};

export function withSecurityHeaders(response: Response): Response {
  // A WebSocket upgrade's 101 carries the socket itself and is passed through as is.
  if (response.status === 101 || response.webSocket) return response;
  const copy = new Response(response.body, response);
  for (const [k, v] of Object.entries(API_SECURITY_HEADERS)) copy.headers.set(k, v);
  return copy;
}
