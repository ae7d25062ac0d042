// `outpost-agent register`: trades a single-use registration token for this
// agent's own credential and writes settings.json, release-keys.pem (the pinned release
// keys: agent/release-keys.ts) and credential.json into a home private to this user
// (agent/home.ts).
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { hostname } from "node:os";
import { resolve } from "node:path";
import { agentName } from "../schema/api.ts";
import type { CliRequest, TokenSource } from "./args.ts";
import { describeCause, HttpStatusError, NetworkError, UsageError } from "./errors.ts";
import { secureHome } from "./home.ts";
import { pinReleaseKeys } from "./release-keys.ts";
import { describeRoute, proxyFor, proxyPolicy, ProxyConfigError, type ProxyPolicy } from "./proxy.ts";
import { homePaths, writeCredential, writeSettings } from "./settings.ts";
import { checkServerUrl, normalizeServerUrl } from "./url-policy.ts";
import { AGENT_VERSION } from "./version.ts";
import { ApiClient } from "./worker/api-client.ts";

type RegisterRequest = Extract<CliRequest, { command: "register" }>;

function readToken(source: TokenSource): string {
  if (source.from !== "file") return source.token;
  let text: string;
  try {
    text = readFileSync(source.path, "utf8");
  } catch (e) {
    throw new UsageError(`cannot read --token-file ${source.path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const token = text.trim();
  if (token.length === 0) throw new UsageError(`--token-file ${source.path} is empty`);
  return token;
}

export async function register(req: RegisterRequest): Promise<number> {
  const check = checkServerUrl(req.server, { insecure: req.insecure });
  if (!check.ok) throw new UsageError(check.error);
  if (!agentName.safeParse(req.name).success) throw new UsageError(`invalid --name ${JSON.stringify(req.name)}: ${agentName.safeParse(req.name).error!.issues[0].message}`);
  const server = normalizeServerUrl(check.url);
  // Registration goes through the proxy too: --proxy, else the environment's.
  let proxy: ProxyPolicy;
  try {
    proxy = proxyPolicy(req.proxy, process.env, "--proxy");
  } catch (e) {
    if (e instanceof ProxyConfigError) throw new UsageError(e.message);
    throw e;
  }
  const token = readToken(req.token);

  let ca: string | null = null;
  if (req.ca !== null) {
    ca = resolve(req.ca);
    try {
      readFileSync(ca);
    } catch (e) {
      throw new UsageError(`cannot read --ca ${ca}: ${(e as Error).message}`);
    }
    // Node reads extra CAs only at start-up: run this command again with them.
    if (process.env.NODE_EXTRA_CA_CERTS !== ca) {
      const r = spawnSync(process.execPath, [...process.execArgv, process.argv[1], ...process.argv.slice(2)], {
        stdio: "inherit",
        env: { ...process.env, NODE_EXTRA_CA_CERTS: ca },
      });
      return r.status ?? 1;
    }
  }

  const paths = homePaths(req.home);
  if (existsSync(paths.credential)) {
    process.stderr.write(`outpost-agent: ${paths.home} already holds a registered agent (${paths.credential}); use another --home\n`);
    return 1;
  }
  secureHome(paths.home); // before the credential lands in it

  if (proxyFor(proxy, check.url) !== null) process.stdout.write(`registering with ${server} ${describeRoute(proxy, check.url)}\n`);
  const api = new ApiClient(server, null, { proxy });
  let res;
  try {
    res = await api.register({
      token,
      name: req.name,
      version: AGENT_VERSION,
      hostname: hostname().slice(0, 255),
      ...(req.tags.length ? { tags: req.tags } : {}),
      // Sent only when asked for: a server older than `replace` refuses unknown fields.
      ...(req.replace ? { replace: true } : {}),
    });
  } catch (e) {
    if (e instanceof HttpStatusError) {
      process.stderr.write(`outpost-agent: registration refused by ${server} (HTTP ${e.status}): ${e.serverError ?? JSON.stringify(e.body)?.slice(0, 300)}\n`);
    } else if (e instanceof NetworkError) {
      process.stderr.write(`outpost-agent: cannot reach ${server}: ${e.message}\n`);
    } else {
      process.stderr.write(`outpost-agent: registration failed: ${describeCause(e)}\n`);
    }
    return 1;
  }

  writeSettings(paths.home, {
    server,
    name: req.name,
    agentId: res.agentId,
    insecure: req.insecure,
    ca,
    proxy: req.proxy, // null: the worker honours the environment's proxy variables instead
    maxConcurrentDeployments: 4,
    registeredAt: new Date().toISOString(),
    version: AGENT_VERSION,
  });
  // Before the credential: a registered home already holds the keys it will verify with.
  const pin = await pinReleaseKeys(paths.home, res.releaseKeys ?? "");
  writeCredential(paths.home, res.credential);
  process.stdout.write(`registered agent ${req.name} (id ${res.agentId}) with ${server}\ncredential stored in ${paths.credential}; start it with: outpost-agent run --home ${paths.home}\n`);
  if (pin.pinned) process.stdout.write(`pinned ${pin.fingerprints.length} release key(s) in ${paths.releaseKeys}: ${pin.fingerprints.join(", ")}\n`);
  else process.stderr.write(`outpost-agent: warning: ${pin.warning}\n`);
  return 0;
}
