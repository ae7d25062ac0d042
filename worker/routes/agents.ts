import { asc, isNull } from "drizzle-orm";
import type { AgentView } from "../../schema/api.ts";
import { agents } from "../../schema/d1.ts";
import { requireApiRole } from "../auth.ts";
import { d1 } from "../db.ts";
import type { Env } from "../env.ts";
import { json } from "../http-errors.ts";

export async function listAgents(request: Request, env: Env): Promise<Response> {
  await requireApiRole(request, env, "viewer");
  const rows = await d1(env)
    .select({ id: agents.id, name: agents.name, status: agents.status, version: agents.version, lastSeenAt: agents.lastSeenAt })
    .from(agents)
    .where(isNull(agents.revokedAt))
    .orderBy(asc(agents.name))
    .all();
  const views: AgentView[] = rows.map((r) => ({
    ...r,
    lastSeenAt: r.lastSeenAt === null ? null : new Date(r.lastSeenAt).toISOString(),
  }));
  return json({ agents: views });
}
