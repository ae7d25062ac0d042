// Routing table. Each path lists its methods; any other method on a known path
// is a 405, any unknown path a JSON 404, and every thrown error a JSON answer.
import { Router } from "itty-router";
import type { ApiRequest } from "./api-request.ts";
import type { Env } from "./env.ts";
import { toErrorResponse } from "./http-errors.ts";
import { errorResponse } from "../schema/http.ts";
import { withSecurityHeaders } from "./security-headers.ts";
import { openChannel, postReports, pullCommands } from "./routes/agent-api.ts";
import { putStepLog } from "./routes/step-log-upload.ts";
import { getAgent, listAgents, patchAgent, revokeAgent } from "./routes/agents.ts";
import { enqueueSynthetic, evictAgentChannel } from "./routes/test-hooks.ts";
import { listUpgradeRolloutsRoute, restartAgent, upgradeAgent, upgradeAgents } from "./routes/agent-control.ts";
import { createApiToken, listApiTokens, revokeApiToken } from "./routes/api-tokens.ts";
import { getDeployment, getDeployments, postCancel, postDeployment } from "./routes/deployments.ts";
import { getStepLog } from "./routes/step-log-read.ts";
import { createRegistrationToken, registerAgent } from "./routes/registration.ts";
import { getVocabulary } from "./routes/vocabulary.ts";
import { deletePlugin, downloadPlugin, getPlugin, listPlugins, postPlugin } from "./routes/plugins.ts";
import { createSecret, getSecrets, removeSecret } from "./routes/secrets.ts";
import { downloadAgentVersion, listAgentVersions, postAgentVersion, putCurrentAgentVersion } from "./routes/agent-versions.ts";
import { getStepSecrets } from "./routes/step-secrets.ts";
import { currentAgentVersionMeta, getReleaseKeys } from "./routes/agent-versions.ts";
import { getInstallScript } from "./routes/install-script.ts";

type Args = [env: Env, ctx: ExecutionContext];
type Handler = (request: ApiRequest, env: Env, ctx: ExecutionContext) => Promise<Response>;
type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

const ROUTES: [path: string, methods: Partial<Record<Method, Handler>>][] = [
  ["/api/v1/registration-tokens", { POST: createRegistrationToken }],
  ["/api/v1/api-tokens", { GET: listApiTokens, POST: createApiToken }],
  ["/api/v1/api-tokens/:id", { DELETE: revokeApiToken }],
  ["/api/v1/agents", { GET: listAgents }],
  ["/api/v1/agents/upgrade", { GET: listUpgradeRolloutsRoute, POST: upgradeAgents }],
  ["/api/v1/agents/:id/restart", { POST: restartAgent }],
  ["/api/v1/agents/:id/upgrade", { POST: upgradeAgent }],
  ["/api/v1/agents/:id", { GET: getAgent, PATCH: patchAgent, DELETE: revokeAgent }],
  ["/api/v1/test-hooks/agents/:id/evict", { POST: evictAgentChannel }],
  ["/api/v1/test-hooks/agents/:id/commands", { POST: enqueueSynthetic }],
  ["/api/v1/deployments", { GET: getDeployments, POST: postDeployment }],
  ["/api/v1/deployments/:id", { GET: getDeployment }],
  ["/api/v1/deployments/:id/cancel", { POST: postCancel }],
  ["/api/v1/deployments/:id/steps/:stepId/log", { GET: getStepLog }],
  ["/vocabulary.js", { GET: getVocabulary }],
  ["/agent/v1/register", { POST: registerAgent }],
  ["/agent/v1/channel", { GET: openChannel }],
  ["/agent/v1/commands", { GET: pullCommands }],
  ["/agent/v1/reports", { POST: postReports }],
  ["/agent/v1/steps/:stepId/log", { PUT: putStepLog }],
  ["/api/v1/plugins", { GET: listPlugins, POST: postPlugin }],
  ["/api/v1/plugins/:id/:version", { GET: getPlugin, DELETE: deletePlugin }],
  ["/agent/v1/plugins/:id/:version", { GET: downloadPlugin }],
  ["/api/v1/secrets", { GET: getSecrets, POST: createSecret }],
  ["/api/v1/secrets/:name", { DELETE: removeSecret }],
  ["/agent/v1/steps/:stepId/secrets", { POST: getStepSecrets }],
  ["/api/v1/agent-versions", { GET: listAgentVersions, POST: postAgentVersion }],
  ["/api/v1/agent-versions/current", { PUT: putCurrentAgentVersion }],
  ["/agent/v1/agent-versions/current/meta", { GET: currentAgentVersionMeta }],
  ["/agent/v1/agent-versions/:version", { GET: downloadAgentVersion }],
  ["/agent/v1/release-keys", { GET: getReleaseKeys }],
  ["/agent/install.sh", { GET: getInstallScript }],
];

export function buildRouter() {
  const router = Router<ApiRequest, Args, Response>({
    catch: (err, request) => toErrorResponse(err, request),
    finally: [
      (response: Response | undefined, request: ApiRequest) =>
        withSecurityHeaders(response ?? errorResponse(404, `no such endpoint: ${request.method} ${new URL(request.url).pathname}`)),
    ],
  });
  for (const [path, methods] of ROUTES) {
    const allowed = Object.keys(methods) as Method[];
    for (const method of allowed) {
      const handler = methods[method]!;
      router[method.toLowerCase() as Lowercase<Method>](path, handler);
    }
    router.all(path, (request: ApiRequest) =>
      errorResponse(405, `${request.method} is not allowed here; use ${allowed.join(" or ")}`, {}, { allow: allowed.join(", ") }),
    );
  }
  return router;
}
