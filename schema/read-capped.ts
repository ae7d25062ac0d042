// Reads a message body with a size cap, for both ends: the server reads requests, the
// agent reads answers, and neither may buffer without bound whatever the peer sends
// (or declares). Null means "larger than the cap": the stream has been cancelled and
// the caller answers with its own error (the server a 413, the agent a protocol error).
export async function readCapped(message: { headers: Headers; body: ReadableStream<Uint8Array> | null }, cap: number): Promise<Uint8Array | null> {
  const declared = message.headers.get("content-length");
  if (declared !== null && Number(declared) > cap) {
    await message.body?.cancel().catch(() => undefined); // refusing is the point; a failed cancel changes nothing
    return null;
  }
  if (!message.body) return new Uint8Array(0);
  const reader = message.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > cap) {
      await reader.cancel().catch(() => undefined);
      return null;
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}
