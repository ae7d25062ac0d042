// The agent config both ends agree on (docs/agent-lifecycle.md §Config): only known keys
// travel, so an old row or a newer server never hands an agent something it rejects.
import { agentConfig, type AgentConfig } from "./api.ts";

export function pickConfig(value: unknown): AgentConfig {
  const o = (value ?? {}) as Record<string, unknown>;
  const parsed = agentConfig.safeParse({ concurrency: o.concurrency, logLevel: o.logLevel });
  return parsed.success ? parsed.data : {};
}

export const sameConfig = (a: AgentConfig, b: AgentConfig): boolean => a.concurrency === b.concurrency && a.logLevel === b.logLevel;
