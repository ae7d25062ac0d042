// The chaos suite's small configuration, inside `npm test`: a few agents behind
// the fault proxy, ~100 steps (some printing several log chunks, some timing out),
// an agent stopped past a deployment's agent-lost deadline, every fault kind at least
// once. The full one is `npm run test:chaos`; the checks themselves are tested
// against planted faults in checks.test.ts.
import { describe, expect, it } from "vitest";
import { SMALL, resolveConfig } from "./config.ts";
import { evaluate } from "./checks.ts";
import { ChaosRun } from "./orchestrator.ts";
import { renderReport } from "./report.ts";

describe("chaos (small configuration)", () => {
  it("loses nothing, runs nothing twice, applies nothing twice, leaves nothing stuck under faults", async () => {
    const cfg = resolveConfig(["--config=small"], { ...process.env, CHAOS_CONFIG: "small" });
    const data = await new ChaosRun(cfg).run();
    const { checks, figures } = evaluate(data);
    console.log(renderReport(data, checks, figures));
    expect(figures.steps).toBeGreaterThanOrEqual(SMALL.deployments * SMALL.stepsMin);
    expect(checks.filter((c) => !c.pass).map((c) => `${c.name}: ${c.details.join(" | ")}`)).toEqual([]);
  }, 420_000);
});
