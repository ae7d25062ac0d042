// GET /agent/install.sh: the agent installer (docs/agent-lifecycle.md, "Installing"),
// rendered with the origin of the request that asked for it, so `curl … | sh` installs
// from, registers with, and trusts the keys of the server it came from. No credential:
// the machine has none yet; the script holds no secret.
import { renderInstallScript } from "../install-script.sh.ts";
import { VERIFY_PROGRAM } from "../install-script.verify.ts";
import type { ApiRequest } from "../api-request.ts";
import type { Env } from "../env.ts";

export async function getInstallScript(request: ApiRequest, _env: Env): Promise<Response> {
  const script = renderInstallScript(new URL(request.url).origin, VERIFY_PROGRAM);
  return new Response(script, {
    headers: {
      "content-type": "text/x-shellscript; charset=utf-8",
      // The origin is baked in, and the script changes with the server's version.
      "cache-control": "no-store",
    },
  });
}
