// GET /vocabulary.js: the web page's copy of the step vocabulary is the schema's own.
import { describe, expect, it } from "vitest";
import * as steps from "../../schema/steps.ts";
import { call } from "./helpers.ts";

describe("GET /vocabulary.js", () => {
  it("serves schema/steps.ts's statuses as an ES module, without a token", async () => {
    const res = await call("/vocabulary.js", {}, null);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    const text = await res.text();
    const exported = Object.fromEntries([...text.matchAll(/export const (\w+) = Object\.freeze\((\[[^\]]*\])\);/g)].map((m) => [m[1], JSON.parse(m[2])]));
    expect(exported).toEqual({
      STEP_STATUSES: steps.STEP_STATUSES,
      ACTIVE_STEP_STATUSES: steps.ACTIVE_STEP_STATUSES,
      FINAL_STEP_STATUSES: steps.FINAL_STEP_STATUSES,
      DEPLOYMENT_STATUSES: steps.DEPLOYMENT_STATUSES,
      FINAL_DEPLOYMENT_STATUSES: steps.FINAL_DEPLOYMENT_STATUSES,
    });
  });
});
