#!/usr/bin/env node
// outpost-agent: runs from source (Node >= 22.18 strips TypeScript types). A package
// has its own bin shim (scripts/agent-package.ts).
import { setFlagsFromString } from "node:v8";

// WebAssembly on baseline (Liftoff) code only. Node strips the types with swc compiled to
// WebAssembly; letting V8 optimize it holds ~20 MB for the life of this long-lived
// process and costs more start-up CPU than it saves (bench/idle-agent.ts). Set before
// the first .ts module loads, hence the dynamic import; it only decides how WebAssembly
// compiled from then on is compiled. The monitor passes it to a worker run from source
// (agent/monitor/monitor.ts).
setFlagsFromString("--liftoff-only");

const { runCli } = await import("../cli.ts");
runCli(process.argv.slice(2));
