import type { z } from "zod";

// Turns a zod error into one readable line: "steps.0.command: Too small: …; agents: …".
export function describeZodError(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => (i.path.length ? `${i.path.join(".")}: ${i.message}` : i.message))
    .join("; ");
}
