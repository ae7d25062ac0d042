// Management API (/api/v1): request bodies and response shapes.
import { z } from "zod";
import { LIMITS } from "./limits.ts";

export const agentName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, "agent names are 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit");

export const stepStatus = z.enum(["pending", "running", "succeeded", "failed", "interrupted", "skipped", "canceled"]);
export type StepStatus = z.infer<typeof stepStatus>;
export const deploymentStatus = z.enum(["queued", "running", "succeeded", "failed", "canceled"]);
export type DeploymentStatus = z.infer<typeof deploymentStatus>;

export const createRegistrationTokenBody = z.strictObject({
  ttlSeconds: z.int().min(60).max(30 * 24 * 3600).optional(),
});

export const stepSpec = z.strictObject({
  name: z.string().min(1).max(200),
  type: z.literal("shell"),
  command: z.string().min(1).max(LIMITS.commandBytes),
  timeoutSeconds: z.int().min(1).max(7 * 24 * 3600).optional(),
  retry: z.enum(["never", "safe"]).optional(),
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
export const DEFAULT_AGENT_LOST_AFTER_SECONDS = 900;
export const IDEMPOTENCY_KEY_MAX = 200;
export type CreateDeploymentBody = z.infer<typeof createDeploymentBody>;

export type AgentView = {
  id: string;
  name: string;
  status: "online" | "offline";
  version: string | null;
  lastSeenAt: string | null; // ISO 8601
};

export type StepView = {
  id: string;
  agent: string;
  name: string;
  status: StepStatus;
  exitCode: number | null;
  reason: string | null;
  startedAt: string | null;
  finishedAt: string | null;
};

export type DeploymentView = {
  id: string;
  name: string;
  status: DeploymentStatus;
  createdAt: string;
  finishedAt: string | null;
  steps: StepView[];
};
