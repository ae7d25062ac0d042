// docs/api.md "Rate limits": repeated failed authentication from one address answers
// 429; only failures count, so a valid credential — even from that same address — and
// a burst of valid registrations are never refused.
import { describe, expect, it } from "vitest";
import { API_SECURITY_HEADERS } from "../../worker/security-headers.ts";
import { call, createDeployment, expectError, postJson, registerAgent, registrationToken } from "./helpers.ts";

// The limit of wrangler.toml's AUTH_FAILURES: 20 failures a minute per address.
const LIMIT = 20;
const from = (ip: string) => ({ headers: { "cf-connecting-ip": ip } });

describe("failed authentication", () => {
  it("answers 429 after repeated bad API tokens from one address, and only there", async () => {
    for (let i = 0; i < LIMIT; i++) await expectError(await call("/api/v1/agents", from("192.0.2.10"), "wrong"), 401);
    const limited = await call("/api/v1/agents", from("192.0.2.10"), "wrong");
    await expectError(limited, 429, /too many failed/);
    expect(limited.headers.get("retry-after")).toBe("60");
    // A valid token from the same address is not locked out; another address is unaffected.
    expect((await call("/api/v1/agents", from("192.0.2.10"))).status).toBe(200);
    await expectError(await call("/api/v1/agents", from("192.0.2.11"), "wrong"), 401);
  });

  it("counts bad agent credentials and bad registration tokens; a burst of valid registrations is never refused", async () => {
    const ip = "192.0.2.20";
    for (let i = 0; i < LIMIT / 2; i++) await expectError(await call("/agent/v1/commands?after=0", from(ip), `bogus-${i}`), 401);
    for (let i = 0; i < LIMIT / 2; i++) {
      await expectError(await call("/agent/v1/register", { method: "POST", body: JSON.stringify({ token: "nope", name: `x${i}`, version: "1" }), ...from(ip) }, null), 401);
    }
    await expectError(await call("/agent/v1/register", { method: "POST", body: JSON.stringify({ token: "nope", name: "y", version: "1" }), ...from(ip) }, null), 429);

    // 40 agents registering at once from that same address, with valid tokens: all in.
    const tokens = await Promise.all(Array.from({ length: 2 * LIMIT }, () => registrationToken()));
    const results = await Promise.all(
      tokens.map((token, i) => call("/agent/v1/register", { method: "POST", body: JSON.stringify({ token, name: `fleet-${i}`, version: "1" }), ...from(ip) }, null)),
    );
    expect(results.map((r) => r.status)).toEqual(tokens.map(() => 201));
  });

  it("never counts successes: many valid calls from one address stay 200", async () => {
    for (let i = 0; i < 2 * LIMIT; i++) expect((await call("/api/v1/agents", from("192.0.2.30"))).status).toBe(200);
  });
});

describe("security headers", () => {
  it("every API answer says nosniff and forbids framing and scripts, errors and logs included", async () => {
    const agent = await registerAgent("headers");
    const id = await createDeployment([agent.name]);
    const view = (await (await call(`/api/v1/deployments/${id}`)).json()) as { steps: { id: string }[] };
    for (const res of [
      await call("/api/v1/agents"),
      await call("/api/v1/nope"),
      await call(`/api/v1/deployments/${id}/steps/${view.steps[0].id}/log`),
      await postJson("/api/v1/deployments", { bad: true }),
    ]) {
      for (const [k, v] of Object.entries(API_SECURITY_HEADERS)) expect(res.headers.get(k), `${res.url} ${k}`).toBe(v);
    }
  });
});
