// Validates pulled commands one by one (schema `command`). A command that fails
// validation but whose seq is readable is still stored (as rejected, its steps
// reported failed) so that acknowledging past it loses nothing silently. One
// whose seq is unreadable stops the intake there: nothing after it is stored.
import { agentCommand as command } from "./wire.ts";
import { describeZodError } from "../../schema/errors.ts";
import type { IncomingCommand } from "./journal.ts";

export type Intake = { items: IncomingCommand[]; problem: string | null };

const str = (v: unknown): string | null => (typeof v === "string" && v.length > 0 && v.length <= 200 ? v : null);

export function classifyCommands(raw: unknown[], lastSeq: number): Intake {
  const items: IncomingCommand[] = [];
  let expected = lastSeq;
  for (const r of raw) {
    const parsed = command.safeParse(r);
    const seq = parsed.success ? parsed.data.seq : (r as { seq?: unknown })?.seq;
    if (typeof seq !== "number" || !Number.isInteger(seq) || seq < 1) {
      return { items, problem: `a command without a readable seq after seq ${expected}: ${JSON.stringify(r)?.slice(0, 200)}` };
    }
    if (seq <= expected) continue; // already stored (or out of order): never store twice
    expected = seq;
    if (parsed.success) {
      items.push({ kind: "valid", command: parsed.data });
      continue;
    }
    const o = (r ?? {}) as { id?: unknown; deploymentId?: unknown; steps?: unknown };
    const steps = Array.isArray(o.steps) ? o.steps : [];
    items.push({
      kind: "rejected",
      seq,
      id: str(o.id) ?? `rejected-seq-${seq}`,
      deploymentId: str(o.deploymentId),
      stepIds: steps.map((s) => str((s as { stepId?: unknown })?.stepId)).filter((s): s is string => s !== null),
      reason: describeZodError(parsed.error).slice(0, 400),
    });
  }
  return { items, problem: null };
}
