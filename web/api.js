// The management API, called with the page's token, and where that token is kept.
// Errors carry the server's own message ({error} of a 4xx).

const TOKEN_KEY = "outpost.adminToken";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// The token is refused (401), or this address failed to authenticate too often (429):
// the page goes back to the sign-in form.
export class AuthError extends ApiError {}

let token = null;
export const setToken = (t) => { token = t; };

// --- where the token is kept ----------------------------------------------------------
// In sessionStorage by default (gone when the tab closes); in localStorage only when
// the user asks to be remembered on this device. Storage may be unavailable (a
// browser setting): the page then simply asks again next time.

function tryStorage(fn) {
  try { return fn(); } catch { return null; }
}

export const storedToken = () =>
  tryStorage(() => sessionStorage.getItem(TOKEN_KEY)) ?? tryStorage(() => localStorage.getItem(TOKEN_KEY));

export function storeToken(t, remember) {
  forgetToken();
  tryStorage(() => (remember ? localStorage : sessionStorage).setItem(TOKEN_KEY, t));
}

export function forgetToken() {
  tryStorage(() => sessionStorage.removeItem(TOKEN_KEY));
  tryStorage(() => localStorage.removeItem(TOKEN_KEY));
}

// --- requests -------------------------------------------------------------------------

// JSON in and out (or raw bytes out: `bytes`, a plug-in package); `raw` hands back the
// Response itself (a log range), and lets a 416 through for the caller to handle.
export async function request(method, path, { body, bytes, contentType = "application/octet-stream", headers = {}, raw = false } = {}) {
  const init = { method, headers: { authorization: `Bearer ${token}`, ...headers }, cache: "no-store" };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  } else if (bytes !== undefined) {
    init.headers["content-type"] = contentType;
    init.body = bytes;
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, "cannot reach the server");
  }
  if (!res.ok && !(raw && res.status === 416)) throw await toError(res);
  if (raw) return res;
  return res.status === 204 ? null : res.json();
}

export const get = (path) => request("GET", path);
export const post = (path, body = {}, headers) => request("POST", path, { body, headers });
export const patch = (path, body) => request("PATCH", path, { body });
export const del = (path) => request("DELETE", path);

// Posts raw bytes; answers the status (a 201 and a 200 mean different things) and the JSON.
export async function upload(path, bytes, contentType) {
  const res = await request("POST", path, { bytes, contentType, raw: true });
  return { status: res.status, body: await res.json() };
}

async function toError(res) {
  let message = "";
  try {
    const body = await res.json();
    if (typeof body?.error === "string") message = body.error;
  } catch { /* not JSON: the status says enough */ }
  if (res.status === 401) return new AuthError(401, `The server refused the token (HTTP 401${message ? `: ${message}` : ""}).`);
  if (res.status === 429) {
    const wait = Number(res.headers.get("retry-after"));
    return new AuthError(429, `Too many failed sign-ins from this address (HTTP 429).${wait > 0 ? ` Try again in ${wait} s.` : ""}`);
  }
  return new ApiError(res.status, message || `HTTP ${res.status}`);
}

export const enc = encodeURIComponent;
