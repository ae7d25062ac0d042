// Storing an immutable, versioned package (a plug-in version, an agent version): its
// bytes go to R2 under a key of this upload's own, then the D1 row that makes them
// visible — so a row never names a missing object — and an upload that lost the race
// to another one of the same version deletes only its own object. Returns the row that
// holds the version now (ours: `inserted`), or null if it vanished meanwhile.
export async function storeImmutable<Row>(opts: {
  bucket: R2Bucket;
  bytes: Uint8Array;
  sha256: string;
  contentType: string;
  row: Row;
  keyOf: (row: Row) => string;
  insert: (row: Row) => Promise<boolean>;
  find: () => Promise<Row | undefined>;
}): Promise<{ inserted: true; row: Row } | { inserted: false; row: Row | null }> {
  const key = opts.keyOf(opts.row);
  await opts.bucket.put(key, opts.bytes, { sha256: opts.sha256, httpMetadata: { contentType: opts.contentType } });
  let inserted: boolean;
  try {
    inserted = await opts.insert(opts.row);
  } catch (e) {
    await opts.bucket.delete(key).catch(() => undefined); // the original error is the one to report
    throw e;
  }
  if (inserted) return { inserted: true, row: opts.row };
  const winner = (await opts.find()) ?? null;
  if (!winner || opts.keyOf(winner) !== key) await opts.bucket.delete(key);
  return { inserted: false, row: winner };
}
