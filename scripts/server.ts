// `npm run server`: apply D1 migrations, then run the Worker under wrangler dev on
// 127.0.0.1:PORT with its state persisted in OUTPOST_STATE_DIR. Ctrl-C / SIGTERM
// stops wrangler and workerd (its child) with it.
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { localConfig, type LocalConfig } from "./local-state.ts";
import { startChild, stopOnSignals } from "./processes.ts";
import { pipeWithoutNoise } from "./quiet-output.ts";

const projectRoot = join(import.meta.dirname, "..");
// Run wrangler with this Node (22, from the `node` devDependency), not whatever `node` is first on PATH.
const wrangler = join(projectRoot, "node_modules/wrangler/bin/wrangler.js");

export async function startServer(config: LocalConfig) {
  const persist = join(config.stateDir, "wrangler");
  const env = { ...process.env, WRANGLER_SEND_METRICS: "false", CI: process.env.CI ?? "1" };
  await applyMigrations(persist, env);
  // Vars go through a 0600 file rather than the command line, where `ps` would show the token and key.
  const envFile = join(config.stateDir, "server.env");
  const vars = {
    OUTPOST_ADMIN_TOKEN: config.adminToken,
    OUTPOST_SECRETS_KEY: config.secretsKey,
    // One line per variable in the env file: the PEM's line breaks become spaces, which
    // the Worker's key parser ignores (schema/agent-package.ts pemBlocks).
    OUTPOST_RELEASE_PUBLIC_KEYS: config.releasePublicKeys.trim().replace(/\s*\n\s*/g, " "),
    ...passThrough(process.env),
  };
  writeFileSync(envFile, Object.entries(vars).map(([k, v]) => `${k}=${v}\n`).join(""), { mode: 0o600 });
  const logLevel = process.env.OUTPOST_LOG_LEVEL ?? "warn";
  const verbose = logLevel !== "warn" && logLevel !== "error" && logLevel !== "none";
  const server = startChild(
    process.execPath,
    [wrangler, "dev", "--ip", "127.0.0.1", "--port", String(config.port), "--persist-to", persist,
      "--env-file", envFile, "--show-interactive-dev-session=false", "--inspector-port", "0", "--log-level", logLevel],
    { cwd: projectRoot, env, stdio: verbose ? "inherit" : ["ignore", "pipe", "pipe"] },
  );
  if (!verbose) {
    pipeWithoutNoise(server.stdout!, process.stdout);
    pipeWithoutNoise(server.stderr!, process.stderr);
  }
  return server;
}

// Wrangler's migration report is long; it is shown only when something failed.
async function applyMigrations(persist: string, env: NodeJS.ProcessEnv) {
  const output: Buffer[] = [];
  const apply = startChild(process.execPath, [wrangler, "d1", "migrations", "apply", "DB", "--local", "--persist-to", persist],
    { cwd: projectRoot, env, stdio: ["ignore", "pipe", "pipe"] });
  apply.stdout!.on("data", (d: Buffer) => output.push(d));
  apply.stderr!.on("data", (d: Buffer) => output.push(d));
  const code = await apply.exited;
  if (code !== 0) {
    process.stderr.write(Buffer.concat(output));
    throw new Error(`applying the D1 migrations failed (wrangler exited with ${code})`);
  }
  const applied = Buffer.concat(output).toString().match(/\d{4}_\w+\.sql\s*│\s*✅/g)?.length ?? 0;
  console.log(applied ? `D1: applied ${applied} migration(s)` : "D1: schema up to date");
}

// Server settings that may be tuned from the launcher's environment (tests shorten timings with them).
const TUNABLE = ["OUTPOST_OFFLINE_AFTER_MS", "OUTPOST_TEST_HOOKS"];
function passThrough(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(TUNABLE.filter((k) => env[k] !== undefined).map((k) => [k, env[k]!]));
}

export async function waitUntilServing(base: string, adminToken: string, timeoutMs = 90_000) {
  const t0 = Date.now();
  for (;;) {
    try {
      const r = await fetch(`${base}/api/v1/agents`, { headers: { authorization: `Bearer ${adminToken}` }, signal: AbortSignal.timeout(5000) });
      if (r.status === 200) return;
    } catch { /* not listening yet */ }
    if (Date.now() - t0 > timeoutMs) throw new Error(`server at ${base} did not answer within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

if (import.meta.main) {
  const config = localConfig();
  const server = await startServer(config);
  stopOnSignals(() => [server]);
  const base = `http://127.0.0.1:${config.port}`;
  await waitUntilServing(base, config.adminToken);
  console.log(`Outpost server at ${base}  (state: ${config.stateDir})`);
  if (config.tokenWasGenerated) console.log(`Admin token (generated, kept in ${join(config.stateDir, "admin-token")}): ${config.adminToken}`);
  process.exitCode = await server.exited;
}
