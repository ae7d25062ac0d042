// Log-append arithmetic: the server holds `stored` bytes of a step's output and
// receives `chunkLength` bytes said to start at `offset`.

export type LogPlan =
  | { kind: "gap" } // offset beyond what the server holds: the client must resend from `stored`
  | { kind: "have-all"; length: number } // every byte of the chunk is already stored (a retry)
  | { kind: "too-large"; length: number } // appending would pass the per-step cap
  | { kind: "append"; skip: number; newLength: number }; // store chunk[skip..] at offset `stored`

export function planLogAppend(stored: number, offset: number, chunkLength: number, maxPerStep: number): LogPlan {
  if (offset > stored) return { kind: "gap" };
  const end = offset + chunkLength;
  if (end <= stored) return { kind: "have-all", length: stored };
  if (end > maxPerStep) return { kind: "too-large", length: stored };
  return { kind: "append", skip: stored - offset, newLength: end };
}
