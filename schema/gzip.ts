// Inflating an uploaded .tar.gz within a memory cap, for plug-in and agent packages, in
// the Worker (128 MB per isolate) and in the agent alike.
//
// The gzip trailer's ISIZE (the unpacked length, mod 2^32) sizes one buffer up front, and
// output past it is refused as soon as it comes: memory never exceeds `cap` plus the
// package itself. A trailer claiming more than `cap` (a bomb, or a truncated file whose
// last bytes are not a trailer) is inflated without keeping the output, to tell which.
// A package is therefore one gzip stream, as `tar czf` writes.

export class GunzipError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "GunzipError";
  }
}

// cap: the most bytes kept; shownLimit: the limit a refusal names (the caller's own
// limit, when `cap` includes an allowance for tar headers).
export async function gunzipCapped(bytes: Uint8Array, cap: number, shownLimit: number = cap): Promise<Uint8Array> {
  if (bytes.length < 18 || bytes[0] !== 0x1f || bytes[1] !== 0x8b) throw new GunzipError("the package is not a gzip file (a .tar.gz is expected)");
  const declared = new DataView(bytes.buffer, bytes.byteOffset + bytes.length - 4, 4).getUint32(0, true);
  const out = declared <= cap ? new Uint8Array(declared) : null;
  const reader = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new DecompressionStream("gzip")).getReader();
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (total + value.byteLength > Math.min(declared, cap)) {
        await reader.cancel().catch(() => undefined); // refusing already; a failed cancel changes nothing
        throw new GunzipError(
          total + value.byteLength > cap
            ? `the package unpacks to more than ${shownLimit} bytes`
            : "the package is not valid gzip data: it unpacks to more than its trailer says (a package is a single gzip stream)",
        );
      }
      out?.set(value, total);
      total += value.byteLength;
    }
  } catch (e) {
    if (e instanceof GunzipError) throw e;
    throw new GunzipError(`the package is not valid gzip data: ${(e as Error).message || (e as Error).name}`, { cause: e });
  }
  if (!out || total !== declared) throw new GunzipError("the package is not valid gzip data: its size trailer does not match its data");
  return out;
}
