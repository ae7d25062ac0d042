// The vocabulary of steps and deployments, defined once: the drizzle enums of the
// three stores, the zod schemas of both APIs, the server's rules and the agent's
// scheduler all take it from here, and the web page gets it from the Worker
// (GET /vocabulary.js, worker/routes/vocabulary.ts).
import { z } from "zod";

export const STEP_STATUSES = ["pending", "running", "succeeded", "failed", "interrupted", "skipped", "canceled"] as const;
export type StepStatus = (typeof STEP_STATUSES)[number];
// Waiting for a result.
export const ACTIVE_STEP_STATUSES = ["pending", "running"] as const satisfies readonly StepStatus[];
export type ActiveStepStatus = (typeof ACTIVE_STEP_STATUSES)[number];
// A step's result: what a step-finished report may say.
export const FINAL_STEP_STATUSES = ["succeeded", "failed", "interrupted", "skipped", "canceled"] as const satisfies readonly StepStatus[];
export type FinalStepStatus = (typeof FINAL_STEP_STATUSES)[number];
export const isActiveStep = (s: StepStatus): s is ActiveStepStatus => (ACTIVE_STEP_STATUSES as readonly string[]).includes(s);

export const DEPLOYMENT_STATUSES = ["queued", "running", "succeeded", "failed", "canceled"] as const;
export type DeploymentStatus = (typeof DEPLOYMENT_STATUSES)[number];
export const FINAL_DEPLOYMENT_STATUSES = ["succeeded", "failed", "canceled"] as const satisfies readonly DeploymentStatus[];

export const STEP_TYPES = ["shell", "plugin"] as const;
export type StepType = (typeof STEP_TYPES)[number];

export const RETRY_POLICIES = ["never", "safe"] as const;
export type RetryPolicy = (typeof RETRY_POLICIES)[number];

export const stepStatus = z.enum(STEP_STATUSES);
export const finalStepStatus = z.enum(FINAL_STEP_STATUSES);
export const deploymentStatus = z.enum(DEPLOYMENT_STATUSES);
export const retryPolicy = z.enum(RETRY_POLICIES);

// How long a deployment waits for an offline agent (server up time) before its
// unfinished steps fail as agent-lost (docs/protocol.md §Agent lost).
export const DEFAULT_AGENT_LOST_AFTER_SECONDS = 900;

// A step's reason, as an agent reports it. Reasons the server composes around one
// (a late result) may be longer by their own prefix.
export const STEP_REASON_MAX = 500;

// The reasons the server records when it ends a step itself (docs/protocol.md
// §Agent lost, §Revoke).
export const SERVER_REASONS = {
  agentLost: "agent-lost",
  lateResult: "agent-lost; result arrived later",
  revoked: "agent revoked",
} as const;

// A step failed as agent-lost that then receives its real result keeps a reason
// saying so, with the agent's own reason after it.
export function lateResultReason(agentReason: string | null): string {
  return agentReason ? `${SERVER_REASONS.lateResult}: ${agentReason.slice(0, STEP_REASON_MAX)}` : SERVER_REASONS.lateResult;
}
