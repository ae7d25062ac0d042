// `npm run test:chaos`: the chaos suite's full configuration (or `-- --config=small`,
// or any setting from the environment / arguments: see config.ts). Prints the
// figures and the checks; exits 1 if any check fails, 2 on bad arguments.
import { resolveConfig, USAGE } from "./config.ts";
import { evaluate } from "./checks.ts";
import { ChaosRun } from "./orchestrator.ts";
import { renderReport } from "./report.ts";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

if (process.argv.includes("--help") || process.argv.includes("-h")) {
  console.log(USAGE);
  process.exit(0);
}
let cfg;
try {
  cfg = resolveConfig(process.argv.slice(2));
} catch (e: any) {
  console.error(e.message);
  process.exit(2);
}

const run = new ChaosRun(cfg);
let stopping = false;
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    console.error(`chaos: ${sig}: stopping everything this run started`);
    void run.cleanup().finally(() => process.exit(130));
  });
}

try {
  const data = await run.run();
  const { checks, figures } = evaluate(data);
  const report = renderReport(data, checks, figures);
  console.log(report);
  writeFileSync(join(data.work, "chaos-report.txt"), report + "\n");
  writeFileSync(join(data.work, "chaos-figures.json"), JSON.stringify({ config: cfg, figures, faults: data.faults, checks }, null, 2));
  process.exitCode = checks.every((c) => c.pass) ? 0 : 1;
} catch (e) {
  console.error("chaos: the run itself failed:", e);
  process.exitCode = 1;
}
