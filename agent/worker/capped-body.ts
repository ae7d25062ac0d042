// Reads an HTTP answer's body with a size cap: a broken or hostile server (or a
// proxy's error page) must not make the agent buffer without bound. Past the cap
// the stream is cancelled and a ProtocolError raised (callers retry with back-off).
import { ProtocolError } from "../errors.ts";

export const MiB = 1024 * 1024;

export class BodyTooLargeError extends ProtocolError {
  constructor(what: string, cap: number) {
    super(`${what}: the answer is larger than ${cap} bytes; not read further`, { cap });
    this.name = "BodyTooLargeError";
  }
}

export async function readCappedText(res: Response, cap: number, what: string): Promise<string> {
  const declared = Number(res.headers.get("content-length"));
  if (Number.isFinite(declared) && declared > cap) {
    await res.body?.cancel();
    throw new BodyTooLargeError(what, cap);
  }
  if (res.body === null) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > cap) {
      await reader.cancel();
      throw new BodyTooLargeError(what, cap);
    }
    chunks.push(value);
  }
  return new TextDecoder().decode(Buffer.concat(chunks, total));
}
