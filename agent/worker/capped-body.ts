// Reads an HTTP answer's body with a size cap: a broken or hostile server (or a
// proxy's error page) must not make the agent buffer without bound. Past the cap
// the stream is cancelled and a ProtocolError raised (callers retry with back-off).
import { readCapped } from "../../schema/read-capped.ts";
import { ProtocolError } from "../errors.ts";

export const MiB = 1024 * 1024;

export class BodyTooLargeError extends ProtocolError {
  constructor(what: string, cap: number) {
    super(`${what}: the answer is larger than ${cap} bytes; not read further`, { cap });
    this.name = "BodyTooLargeError";
  }
}

export async function readCappedText(res: Response, cap: number, what: string): Promise<string> {
  const bytes = await readCapped(res, cap);
  if (bytes === null) throw new BodyTooLargeError(what, cap);
  return new TextDecoder().decode(bytes);
}

export async function readCappedBytes(res: Response, cap: number, what: string): Promise<Uint8Array> {
  const bytes = await readCapped(res, cap);
  if (bytes === null) throw new BodyTooLargeError(what, cap);
  return bytes;
}
