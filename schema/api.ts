// Management API (/api/v1): request bodies and response shapes.
import { z } from "zod";
import { LIMITS } from "./limits.ts";
import { retryPolicy, type DeploymentStatus, type StepStatus } from "./steps.ts";

// A path segment naming a thing by its id (or name).
export const pathId = z.string().min(1).max(200);

export const agentName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, "agent names are 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit");


export const createRegistrationTokenBody = z.strictObject({
  ttlSeconds: z.int().min(60).max(30 * 24 * 3600).optional(),
});

export const stepSpec = z.strictObject({
  name: z.string().min(1).max(200),
  type: z.literal("shell"),
  command: z.string().min(1).max(LIMITS.commandBytes),
  timeoutSeconds: z.int().min(1).max(7 * 24 * 3600).optional(),
  retry: retryPolicy.optional(),
});
export type StepSpec = z.infer<typeof stepSpec>;

export const createDeploymentBody = z.strictObject({
  name: z.string().min(1).max(200).optional(),
  agents: z
    .array(agentName)
    .min(1)
    .max(LIMITS.agentsPerDeployment)
    .refine((a) => new Set(a).size === a.length, "agents must not repeat a name"),
  steps: z.array(stepSpec).min(1).max(LIMITS.stepsPerDeployment),
  // How long to wait for an offline agent before its unfinished steps fail as
  // `agent-lost`; a result arriving later is still recorded.
  agentLostAfterSeconds: z.int().min(1).max(7 * 24 * 3600).optional(),
});
export const IDEMPOTENCY_KEY_MAX = 200;
// A key answers for its deployment this long; after that it may name a new one.
export const IDEMPOTENCY_KEY_TTL_MS = 24 * 3600 * 1000;
export type CreateDeploymentBody = z.infer<typeof createDeploymentBody>;

export type AgentView = {
  id: string;
  name: string;
  status: "online" | "offline";
  version: string | null;
  lastSeenAt: string | null; // ISO 8601
};

// startedAt / finishedAt: when the work happened on the agent, on the server's clock;
// reportedAt: when the server received the final result (after an outage the two can
// be far apart). docs/protocol.md §Reports, "Times".
export type StepView = {
  id: string;
  agent: string;
  name: string;
  status: StepStatus;
  exitCode: number | null;
  reason: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  reportedAt: string | null;
};

export type DeploymentView = {
  id: string;
  name: string;
  status: DeploymentStatus;
  createdAt: string;
  finishedAt: string | null;
  steps: StepView[];
};

// An entry of GET /api/v1/deployments: counts, never the steps themselves (a
// deployment may hold many thousands); GET /api/v1/deployments/:id has them.
export type DeploymentSummary = Omit<DeploymentView, "steps"> & {
  agentCount: number;
  stepCounts: Record<StepStatus, number>;
};

export const DEPLOYMENTS_PAGE_MAX = 100;
export const listDeploymentsQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(DEPLOYMENTS_PAGE_MAX).default(50),
  before: z.string().min(1).max(200).optional(), // the `next` cursor of the previous page
});

// GET …/steps/:stepId/log?offset=B&limit=L: at most L bytes from byte B.
export const LOG_READ_MAX = 1024 * 1024;
export const logRangeQuery = z.strictObject({
  offset: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(LOG_READ_MAX).default(LOG_READ_MAX),
});

// API tokens (docs/api.md): the secret is shown once, at creation; stored hashed.
export const apiTokenRole = z.enum(["admin", "viewer"]);
export const createApiTokenBody = z.strictObject({
  role: apiTokenRole,
  name: z.string().trim().min(1).max(100),
});
export type ApiTokenView = { id: string; name: string; role: "admin" | "viewer"; createdAt: string };
