// HTTP from the chaos run to the server, as the admin.
import { sleep, type TestServer } from "../support/local-server.ts";

export type Http = { status: number; json: any; text: string };
export type HttpBytes = { status: number; headers: Headers; bytes: Buffer };

export class ApiClient {
  readonly #server: TestServer;

  constructor(server: TestServer) {
    this.#server = server;
  }

  // The server itself (not the API fault proxy).
  get base(): string {
    return this.#server.base;
  }

  // `base`: the server itself or the API fault proxy in front of it.
  async http(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}, timeoutMs = 10_000): Promise<Http> {
    const r = await fetch(base + path, {
      method,
      headers: { authorization: `Bearer ${this.#server.adminToken}`, ...(body === undefined ? {} : { "content-type": "application/json" }), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await r.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: r.status, json, text };
  }

  // A read of raw bytes straight to the server (a log range), retried like get().
  async getBytes(path: string, ms = 60_000): Promise<HttpBytes> {
    const t0 = Date.now();
    for (;;) {
      try {
        const r = await fetch(this.#server.base + path, { headers: { authorization: `Bearer ${this.#server.adminToken}` }, signal: AbortSignal.timeout(10_000) });
        const bytes = Buffer.from(await r.arrayBuffer());
        if (r.status < 500 || Date.now() - t0 > ms) return { status: r.status, headers: r.headers, bytes };
      } catch (e) {
        if (Date.now() - t0 > ms) throw e;
      }
      await sleep(500);
    }
  }

  // A read straight to the server, retried through restarts (network errors, 5xx) until `ms`.
  async get(path: string, ms = 60_000): Promise<Http> {
    const t0 = Date.now();
    for (;;) {
      try {
        const r = await this.http(this.#server.base, "GET", path);
        if (r.status < 500) return r;
        if (Date.now() - t0 > ms) return r;
      } catch (e) {
        if (Date.now() - t0 > ms) throw e;
      }
      await sleep(500);
    }
  }
}
