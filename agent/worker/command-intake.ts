// Sorts pulled commands before they are stored (docs/protocol.md §Commands).
// Every command with a readable seq is stored, so acknowledging past it loses
// nothing silently:
// - valid: stored pending, to run;
// - lost: at or below the server's `acked` yet not in this journal — this agent
//   stored it before and then lost it (journal lost or restored from an older
//   copy), so it may already have run. Stored as ended, each step reported
//   `interrupted`; never run (invariant 2);
// - rejected: fails validation; stored as ended, each step id read reported `failed`.
// One whose seq is unreadable stops the intake there: nothing after it is stored.
// Nothing here ever quotes a command: its text may hold secrets, and what this
// returns is logged.
import { command } from "../../schema/agent-api.ts";
import { describeZodError } from "../../schema/errors.ts";
import type { IncomingCommand } from "./journal.ts";

export type Intake = { items: IncomingCommand[]; problem: string | null };

const isSeq = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 1;
const str = (v: unknown): string | null => (typeof v === "string" && v.length > 0 && v.length <= 200 ? v : null);

// `lastSeq`: the journal's highest stored seq (every seq ≤ it is in the journal).
// `acked`: the pull's answer — what the server had seen acknowledged before this pull.
export function classifyCommands(raw: unknown[], lastSeq: number, acked: number): Intake {
  const items: IncomingCommand[] = [];
  let expected = lastSeq;
  for (const r of raw) {
    const parsed = command.safeParse(r);
    const seq = parsed.success ? parsed.data.seq : (r as { seq?: unknown })?.seq;
    if (!isSeq(seq)) {
      const what =
        r === null || typeof r !== "object" ? `not an object` : seq === undefined ? "no seq" : typeof seq === "number" ? "seq not a positive integer" : `seq is a ${typeof seq}`;
      return { items, problem: `a command without a readable seq after seq ${expected} (${what})` };
    }
    if (seq <= expected) continue; // already stored (or out of order): never store twice
    expected = seq;
    // Checked before validity: a lost command may have run whatever this agent thinks of it now.
    if (seq <= acked) {
      items.push({ kind: "lost", ...readable(r, seq) });
      continue;
    }
    if (parsed.success) {
      items.push({ kind: "valid", command: parsed.data });
      continue;
    }
    items.push({ kind: "rejected", ...readable(r, seq), reason: describeZodError(parsed.error).slice(0, 400) });
  }
  return { items, problem: null };
}

// What can be read of a command that will not run: enough to end its steps.
function readable(r: unknown, seq: number): { seq: number; id: string; deploymentId: string | null; stepIds: string[] } {
  const o = (r ?? {}) as { id?: unknown; deploymentId?: unknown; steps?: unknown };
  const steps = Array.isArray(o.steps) ? o.steps : [];
  return {
    seq,
    id: str(o.id) ?? `unreadable-seq-${seq}`,
    deploymentId: str(o.deploymentId),
    stepIds: steps.map((s) => str((s as { stepId?: unknown })?.stepId)).filter((s): s is string => s !== null),
  };
}
