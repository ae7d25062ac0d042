// Management API (/api/v1): request bodies and response shapes.
import { z } from "zod";
import { LIMITS } from "./limits.ts";
import { inputValue, pluginId, semver } from "./plugin.ts";
import { retryPolicy, type DeploymentStatus, type StepStatus } from "./steps.ts";

// A path segment naming a thing by its id (or name).
export const pathId = z.string().min(1).max(200);

export const agentName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, "agent names are 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit");


export const createRegistrationTokenBody = z.strictObject({
  ttlSeconds: z.int().min(60).max(30 * 24 * 3600).optional(),
});

// Agent tags and properties (docs/api.md §Agents): tags select targets, properties feed
// `${{ agent.properties.K }}`.
export const tag = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, "tags are 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit");
export const tagList = z
  .array(tag)
  .max(50)
  .refine((t) => new Set(t).size === t.length, "tags must not repeat");
export const propertyKey = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "property names are 1-64 letters, digits, '_' or '-'");
// Values are text; numbers and booleans are accepted and kept as their text.
const propertyValue = z.union([z.string().max(4096), z.number(), z.boolean()]).transform((v) => String(v));
export const properties = z
  .record(propertyKey, propertyValue)
  .refine((p) => Object.keys(p).length <= 100, "at most 100 properties");
export type Properties = Record<string, string>;

// Settings an agent applies itself (docs/agent-lifecycle.md §Config): they reach it as
// ledger commands, so an offline agent gets them when it returns.
export const LOG_LEVELS = ["error", "warn", "info", "debug"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const agentConfig = z.strictObject({
  concurrency: z.int().min(1).max(64).optional(), // deployments run at once
  logLevel: z.enum(LOG_LEVELS).optional(),
});
export type AgentConfig = z.infer<typeof agentConfig>;

// docs/agent-lifecycle.md §Upgrade.
export const UPGRADE_STATES = ["pending", "downloading", "verifying", "switching", "succeeded", "rolled-back", "failed"] as const;
export type UpgradeState = (typeof UPGRADE_STATES)[number];
export const upgradeAgentBody = z.strictObject({ version: z.string().min(1).max(100) });

export type UpgradeView = { version: string; state: UpgradeState; reason: string | null; updatedAt: string };

export const patchAgentBody = z
  .strictObject({ tags: tagList.optional(), properties: properties.optional(), concurrency: z.int().min(1).max(64).optional(), logLevel: z.enum(LOG_LEVELS).optional() })
  .refine((b) => Object.values(b).some((v) => v !== undefined), "give at least one of tags, properties, concurrency, logLevel");

// Secrets (docs/api.md §Secrets): stored encrypted, never shown again.
export const secretName = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "secret names are 1-64 letters, digits, '_' or '-'");
export const SECRET_VALUE_MAX = 64 * 1024;
export const createSecretBody = z.strictObject({ name: secretName, value: z.string().min(1).max(SECRET_VALUE_MAX) });
export type SecretView = { name: string; updatedAt: string };

// Step names are unique within a deployment (expressions name them).
const stepCommon = {
  name: z.string().min(1).max(200),
  timeoutSeconds: z.int().min(1).max(7 * 24 * 3600).optional(),
  retry: retryPolicy.optional(),
};
export const shellStepSpec = z.strictObject({
  ...stepCommon,
  type: z.literal("shell"),
  command: z.string().min(1).max(LIMITS.commandBytes),
});
export const pluginStepSpec = z.strictObject({
  ...stepCommon,
  type: z.literal("plugin"),
  plugin: pluginId,
  version: semver.optional(), // none: the latest at creation, pinned
  step: z.string().min(1).max(64),
  inputs: z.record(z.string().min(1).max(64), inputValue).default({}),
});
export const stepSpec = z.discriminatedUnion("type", [shellStepSpec, pluginStepSpec]);
export type StepSpec = z.infer<typeof stepSpec>;
export type ShellStepSpec = z.infer<typeof shellStepSpec>;
export type PluginStepSpec = z.infer<typeof pluginStepSpec>;

// "25%" or a count: how many agents run at once (docs/api.md §Rollout).
export const batchSize = z.union([
  z.int().min(1).max(100_000),
  z.string().regex(/^(100|[1-9]\d?)%$/, "a percentage batch size is 1% to 100%, e.g. \"25%\""),
]);
export const rollout = z.strictObject({ batchSize, stopOnFailure: z.boolean().default(false) });
export type Rollout = z.infer<typeof rollout>;

// Many agents in waves: named ones, or every live agent carrying all the tags (neither:
// every live agent). A failed or rolled-back upgrade stops the waves.
export const upgradeAgentsBody = z
  .strictObject({
    version: z.string().min(1).max(100),
    agents: z.array(agentName).min(1).max(1000).optional(),
    tags: tagList.min(1).optional(),
    batchSize: batchSize.optional(),
  })
  .refine((b) => !(b.agents && b.tags), "name the agents either by `agents` or by `tags`, not both");

export const createDeploymentBody = z
  .strictObject({
    name: z.string().min(1).max(200).optional(),
    agents: z
      .array(agentName)
      .min(1)
      .max(LIMITS.agentsPerDeployment)
      .refine((a) => new Set(a).size === a.length, "agents must not repeat a name")
      .optional(),
    // Every live agent carrying all these tags when the deployment is created.
    targets: z.strictObject({ tags: tagList.min(1) }).optional(),
    properties: properties.default({}),
    rollout: rollout.optional(),
    // Names must be unique (a 422 from the server: expressions name steps).
    steps: z.array(stepSpec).min(1).max(LIMITS.stepsPerDeployment),
    // How long to wait for an offline agent before its unfinished steps fail as
    // `agent-lost`; a result arriving later is still recorded.
    agentLostAfterSeconds: z.int().min(1).max(7 * 24 * 3600).optional(),
  })
  .superRefine((b, ctx) => {
    if ((b.agents === undefined) === (b.targets === undefined))
      ctx.addIssue({ code: "custom", path: ["agents"], message: "name the targets either by `agents` (names) or by `targets: {tags}`, not both or neither" });
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
  tags: string[];
  properties: Properties;
};

// startedAt / finishedAt: when the work happened on the agent, on the server's clock;
// reportedAt: when the server received the final result (after an outage the two can
// be far apart). docs/protocol.md §Reports, "Times".
export type StepView = {
  id: string;
  agent: string;
  name: string;
  type: "shell" | "plugin";
  plugin: { id: string; version: string; step: string } | null; // pinned at creation
  wave: number; // 1-based: the rollout wave of its agent
  outputs: Record<string, string>; // what the step wrote to OUTPOST_OUTPUTS (secrets masked)
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
  canceledAt: string | null; // a cancel was asked for (the deployment ends `canceled` once its steps have)
  properties: Properties;
  // How the targets were named, and the agents that resolved to (kept as at creation).
  targets: { agents: string[]; tags: string[] | null };
  rollout: { batchSize: number | string; stopOnFailure: boolean; waves: number; currentWave: number } | null;
  steps: StepView[];
};

// An entry of GET /api/v1/deployments: counts, never the steps themselves (a
// deployment may hold many thousands); GET /api/v1/deployments/:id has them.
export type DeploymentSummary = Pick<DeploymentView, "id" | "name" | "status" | "createdAt" | "finishedAt" | "canceledAt"> & {
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
