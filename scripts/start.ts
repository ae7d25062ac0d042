// `npm start`: the local server (as `npm run server`) plus one agent named `local`
// on this machine, registered on the first start, so a deployment can be tried
// straight away. Ctrl-C / SIGTERM stops the agent, then the server. If either
// dies on its own, the other is stopped too and this exits non-zero: a half-up
// pair would look healthy in the terminal while deployments hang.
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { localConfig } from "./local-state.ts";
import { startChild, stopOnSignals, runToEnd, type Child } from "./processes.ts";
import { startServer, waitUntilServing } from "./server.ts";
import { describePublish, publishPlugins } from "./publish-plugins.ts";

const projectRoot = join(import.meta.dirname, "..");
const agentBin = join(projectRoot, "agent/bin/outpost-agent.mjs");
const AGENT_NAME = "local";

const config = localConfig();
const base = `http://127.0.0.1:${config.port}`;
const agentHome = join(config.stateDir, "agents", AGENT_NAME);
const children: Child[] = [];

// stopOnSignals stops the children and exits 0; this flag tells the watchers
// below that a child ending now is that shutdown, not a crash. Signal listeners
// run before any child's exit event can be handled, so the flag is always set first.
let shuttingDown = false;
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(sig, () => { shuttingDown = true; });
stopOnSignals(() => children);

async function api(method: string, path: string, body?: unknown) {
  const r = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${config.adminToken}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: HTTP ${r.status} ${text}`);
  return JSON.parse(text);
}

// Rejects as soon as a child exits, so startup never waits out a timeout on a dead server.
function diesFirst(c: Child, what: string): Promise<never> {
  return c.exited.then((code) => { throw new Error(`${what} exited (code ${code}) during startup`); });
}

async function registerLocalAgent() {
  const { token } = await api("POST", "/api/v1/registration-tokens", {});
  mkdirSync(agentHome, { recursive: true, mode: 0o700 });
  // Through the environment, not the command line, where `ps` would show the token.
  await runToEnd(process.execPath, [agentBin, "register", "--server", base, "--name", AGENT_NAME, "--home", agentHome], {
    cwd: projectRoot,
    env: { ...process.env, OUTPOST_REGISTRATION_TOKEN: token },
  });
}

async function waitAgentOnline(timeoutMs: number): Promise<boolean> {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    const { agents } = await api("GET", "/api/v1/agents");
    if (agents.some((a: { name: string; status: string }) => a.name === AGENT_NAME && a.status === "online")) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}

function printWelcome(online: boolean) {
  const deploy = JSON.stringify({ agents: [AGENT_NAME], steps: [{ name: "hello", type: "shell", command: "echo hello" }] });
  console.log(`
Outpost is running  (state: ${config.stateDir})
  Web:          ${base}/#token=${encodeURIComponent(config.adminToken)}
                ${base}/  (asks for the token)
  Admin token:  ${config.adminToken}${config.tokenWasGenerated ? `  (generated; kept in ${join(config.stateDir, "admin-token")})` : ""}
  Agent:        ${AGENT_NAME} (home ${agentHome})${online ? "" : "  - not online yet; see its output above"}

Try a deployment:
  curl -sS -X POST ${base}/api/v1/deployments -H 'Authorization: Bearer ${config.adminToken}' -H 'content-type: application/json' -d '${deploy}'

Ctrl-C stops the agent and the server.
`);
}

async function main() {
  const server = await startServer(config);
  children.push(server);
  await Promise.race([waitUntilServing(base, config.adminToken), diesFirst(server, "the server")]);
  console.log(describePublish(await Promise.race([publishPlugins(base, config.adminToken), diesFirst(server, "the server")])));

  if (!existsSync(join(agentHome, "credential.json"))) {
    console.log(`Registering agent "${AGENT_NAME}" (first start)…`);
    await Promise.race([registerLocalAgent(), diesFirst(server, "the server")]);
  }
  const agent = startChild(process.execPath, [agentBin, "run", "--home", agentHome], { cwd: projectRoot });
  children.push(agent);
  const online = await Promise.race([waitAgentOnline(30_000), diesFirst(server, "the server"), diesFirst(agent, "the agent")]);
  printWelcome(online);

  const [which, code] = await Promise.race([
    server.exited.then((c) => ["server", c] as const),
    agent.exited.then((c) => ["agent", c] as const),
  ]);
  if (shuttingDown) return; // stopOnSignals is stopping the rest and exits
  console.error(`outpost: the ${which} exited unexpectedly (code ${code}); stopping the ${which === "server" ? "agent" : "server"}.`);
  await stopAll();
  process.exit(1);
}

async function stopAll() {
  for (const c of [...children].reverse()) await c.stop();
}

try {
  await main();
} catch (err) {
  if (!shuttingDown) {
    console.error(`outpost: ${err instanceof Error ? err.message : String(err)}`);
    await stopAll();
    process.exit(1);
  }
}
