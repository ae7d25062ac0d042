// Request bodies: size-capped before parsing, JSON-parsed, then zod-validated.
import type { z } from "zod";
import { describeZodError } from "../schema/errors.ts";
import { LIMITS } from "../schema/limits.ts";
import { readCapped } from "../schema/read-capped.ts";
import { HttpError } from "./http-errors.ts";

// Reads at most `cap` bytes; a larger body is refused (413) without buffering it all.
export async function readBytes(request: Request, cap: number, what = "body"): Promise<Uint8Array> {
  const bytes = await readCapped(request, cap);
  if (bytes === null) throw new HttpError(413, `${what} is larger than ${cap} bytes`);
  return bytes;
}

export async function readJson<S extends z.ZodType>(
  request: Request,
  schema: S,
  opts: { emptyAs?: unknown } = {},
): Promise<z.infer<S>> {
  const bytes = await readBytes(request, LIMITS.jsonBodyBytes);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw new HttpError(400, "body is not valid UTF-8");
  }
  let value: unknown;
  if (text.trim() === "" && "emptyAs" in opts) {
    value = opts.emptyAs;
  } else {
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new HttpError(400, `body is not valid JSON: ${(e as Error).message}`);
    }
  }
  return parseWith(schema, value, "body");
}

export function parseWith<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw new HttpError(400, `invalid ${what}: ${describeZodError(result.error)}`);
  return result.data;
}

// itty-router gives repeated query keys as arrays; our queries take each key once.
export function singleQuery(query: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(query)) {
    if (Array.isArray(v)) throw new HttpError(400, `query parameter '${k}' is given more than once`);
    if (v !== undefined) out[k] = v;
  }
  return out;
}
