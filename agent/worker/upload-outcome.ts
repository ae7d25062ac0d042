// What one log chunk's upload came to (docs/protocol.md §Logs), decided from the
// server's answer alone, so the uploader's loop only has to act on it. The agent's
// counterpart of the server's LogPlan (d1/log-plan.ts).
import { logUploadResponse } from "../../schema/agent-api.ts";
import { ProtocolError, shouldRetry } from "../errors.ts";
import { validate, type LogAnswer } from "./api-client.ts";

export type UploadOutcome =
  | { kind: "stored"; length: number } // the server holds `length` bytes: go on from there
  | { kind: "gap"; length: number } // 409: the offset was beyond what the server holds: resume at `length`
  | { kind: "closed"; length: number } // 410: the step has ended on the server; it takes no more output
  | { kind: "too-large"; reason: string } // 413: past the per-step cap; no more output is taken
  | { kind: "rejected"; error: unknown } // any other refusal: trying again cannot help
  | { kind: "retry"; error: unknown }; // may pass later (shouldRetry): retry with back-off

// `offset`: where the chunk was said to start.
export function uploadOutcome(answer: LogAnswer | { error: unknown }, offset: number): UploadOutcome {
  if ("error" in answer) return shouldRetry(answer.error) ? { kind: "retry", error: answer.error } : { kind: "rejected", error: answer.error };
  const { status, body } = answer;
  if (status === 413) {
    const serverError = typeof (body as { error?: unknown } | null)?.error === "string" ? (body as { error: string }).error : null;
    return { kind: "too-large", reason: `HTTP 413${serverError ? `: ${serverError}` : ""}` };
  }
  let length: number;
  try {
    length = validate(logUploadResponse, body, `log upload answer (HTTP ${status})`).length;
  } catch (e) {
    return { kind: "retry", error: e }; // a ProtocolError: a proxy's page, say; it may pass
  }
  if (status === 410) return { kind: "closed", length };
  if (status === 409) {
    // A 409 at the very offset we sent is no gap: the server's log changed under it
    // (concurrent appends) and it asks for a retry. Resuming "there" at once would spin.
    if (length === offset) return { kind: "retry", error: new ProtocolError(`log upload answered HTTP 409 at offset ${offset} while holding exactly that many bytes`, { status, offset }) };
    return { kind: "gap", length };
  }
  return { kind: "stored", length };
}
