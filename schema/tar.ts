// A tar reader and writer on plain Uint8Arrays, for the Worker (workerd) and the agent
// and scripts (Node) alike: plug-in packages (schema/plugin-package.ts) are tar files.
// The reader understands ustar, GNU long names/link names ('L'/'K') and pax headers
// ('x'/'g': path, linkpath, size) and verifies every header's checksum; it reports what
// the archive says and leaves judging it (paths escaping the root, links, devices) to
// its caller. The writer is deterministic: the caller's order, mtime 0, owner 0:0.

export type TarEntryType = "file" | "directory" | "symlink" | "hardlink" | "char-device" | "block-device" | "fifo" | "other";

export type TarEntry = {
  path: string; // as written in the archive (not normalised)
  type: TarEntryType;
  typeflag: string; // the header's type character, e.g. "0", "5", "S"
  mode: number;
  size: number; // bytes of data (0 for header-only types)
  data: Uint8Array; // a view into the input, not a copy
  linkTarget?: string; // symlinks and hardlinks
};

export class TarError extends Error {
  readonly offset: number | null; // of the offending header, when reading
  constructor(message: string, offset: number | null = null) {
    super(offset === null ? message : `${message} (header at byte ${offset})`);
    this.name = "TarError";
    this.offset = offset;
  }
}

const BLOCK = 512;
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });
const encoder = new TextEncoder();

const TYPES: Record<string, TarEntryType> = {
  "0": "file",
  "\0": "file",
  "7": "file", // contiguous file: a regular file everywhere that matters
  "1": "hardlink",
  "2": "symlink",
  "3": "char-device",
  "4": "block-device",
  "5": "directory",
  "6": "fifo",
};
// As in Go's archive/tar: these types never carry data, whatever their size field says.
const HEADER_ONLY: readonly TarEntryType[] = ["hardlink", "symlink", "char-device", "block-device", "directory", "fifo"];

type Overrides = { path?: string; linkpath?: string; size?: number };
// A pax record with an empty value cancels the key: null until merged.
type PaxRecords = { [K in keyof Overrides]?: Overrides[K] | null };

function merge(base: Overrides, records: PaxRecords): Overrides {
  const out: Overrides = { ...base };
  for (const [k, v] of Object.entries(records) as [keyof Overrides, string | number | null][]) {
    if (v === null) delete out[k];
    else (out as Record<string, string | number>)[k] = v;
  }
  return out;
}

export function readTar(bytes: Uint8Array): TarEntry[] {
  const entries: TarEntry[] = [];
  let global: Overrides = {};
  let next: PaxRecords = {}; // from 'L'/'K'/'x' entries, for the next real entry only
  let at = 0;
  for (;;) {
    if (at + BLOCK > bytes.length) throw new TarError("truncated archive: no end-of-archive marker", at);
    const header = bytes.subarray(at, at + BLOCK);
    if (header.every((b) => b === 0)) {
      if (Object.keys(next).length > 0) throw new TarError("archive ends after an extended header with no entry to apply it to", at);
      return entries;
    }
    verifyChecksum(header, at);
    const typeflag = String.fromCharCode(header[156]);
    const isMeta = typeflag === "x" || typeflag === "g" || typeflag === "L" || typeflag === "K";
    const over = merge(global, next);
    const headerSize = numberField(header, 124, 12, "size", at);
    const type = typeOf(typeflag, header, at);
    const dataSize = HEADER_ONLY.includes(type) ? 0 : isMeta ? headerSize : (over.size ?? headerSize);
    const dataStart = at + BLOCK;
    if (dataStart + dataSize > bytes.length) throw new TarError(`truncated archive: entry data runs past the end`, at);
    const data = bytes.subarray(dataStart, dataStart + dataSize);
    const headerAt = at;
    at = dataStart + Math.ceil(dataSize / BLOCK) * BLOCK;

    switch (typeflag) {
      case "L":
        next.path = cString(data, headerAt, "GNU long name");
        continue;
      case "K":
        next.linkpath = cString(data, headerAt, "GNU long link name");
        continue;
      case "x":
        next = { ...next, ...paxRecords(data, headerAt) };
        continue;
      case "g":
        global = merge(global, paxRecords(data, headerAt));
        continue;
    }
    const path = over.path ?? headerPath(header, headerAt);
    if (path === "") throw new TarError("an entry has an empty name", headerAt);
    const entry: TarEntry = { path, type, typeflag, mode: numberField(header, 100, 8, "mode", headerAt), size: dataSize, data };
    if (type === "symlink" || type === "hardlink") entry.linkTarget = over.linkpath ?? text(header.subarray(157, 257), headerAt, "link name");
    entries.push(entry);
    next = {};
  }
}

// Pre-POSIX archives mark a directory by a trailing '/' on a '\0'-typed entry.
function typeOf(typeflag: string, header: Uint8Array, at: number): TarEntryType {
  if (typeflag === "\0" && headerPath(header, at).endsWith("/")) return "directory";
  return TYPES[typeflag] ?? "other";
}

function verifyChecksum(header: Uint8Array, at: number): void {
  let stored: number;
  try {
    stored = numberField(header, 148, 8, "checksum", at);
  } catch {
    throw new TarError("header checksum field is unreadable: not a tar archive, or a corrupted one", at);
  }
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : header[i];
    unsigned += b;
    signed += b > 127 ? b - 256 : b; // some old writers summed signed chars
  }
  if (stored !== unsigned && stored !== signed) throw new TarError(`header checksum mismatch (stored ${stored}, computed ${unsigned}): not a tar archive, or a corrupted one`, at);
}

// Octal, NUL/space terminated; or GNU base-256 (high bit of the first byte) for big values.
function numberField(header: Uint8Array, offset: number, length: number, what: string, at: number): number {
  const field = header.subarray(offset, offset + length);
  if (field[0] & 0x80) {
    if (field[0] !== 0x80) throw new TarError(`${what} field is a negative or oversized base-256 number`, at);
    let n = 0;
    for (let i = 1; i < length; i++) n = n * 256 + field[i];
    if (!Number.isSafeInteger(n)) throw new TarError(`${what} field is too large`, at);
    return n;
  }
  let s = "";
  for (const b of field) {
    if (b === 0) break;
    s += String.fromCharCode(b);
  }
  s = s.trim();
  if (s === "") return 0;
  if (!/^[0-7]+$/.test(s)) throw new TarError(`${what} field is not an octal number: ${JSON.stringify(s)}`, at);
  return parseInt(s, 8);
}

// Header fields end at their first NUL; pax values may hold any byte but NUL anyway.
function text(field: Uint8Array, at: number, what: string, nulTerminated = true): string {
  const end = nulTerminated ? field.indexOf(0) : -1;
  try {
    return utf8.decode(end === -1 ? field : field.subarray(0, end));
  } catch {
    throw new TarError(`${what} is not valid UTF-8`, at);
  }
}

function cString(data: Uint8Array, at: number, what: string): string {
  const s = text(data, at, what);
  if (s === "") throw new TarError(`${what} is empty`, at);
  return s;
}

// Only POSIX ustar ("ustar\0") has a prefix field; GNU ("ustar  ") keeps times there.
function headerPath(header: Uint8Array, at: number): string {
  const name = text(header.subarray(0, 100), at, "entry name");
  const isPosixUstar = header[257] === 0x75 && header[262] === 0 && text(header.subarray(257, 262), at, "magic") === "ustar";
  if (!isPosixUstar) return name;
  const prefix = text(header.subarray(345, 500), at, "name prefix");
  return prefix ? `${prefix}/${name}` : name;
}

// "%d %s=%s\n" records, the length counting the whole record in bytes. Keys other than
// path, linkpath and size (times, owners, comments) change nothing we keep.
function paxRecords(data: Uint8Array, at: number): PaxRecords {
  const out: PaxRecords = {};
  let i = 0;
  while (i < data.length) {
    if (data[i] === 0) break; // padding some writers leave
    const space = data.subarray(i, i + 12).indexOf(0x20);
    const lenText = space <= 0 ? "" : String.fromCharCode(...data.subarray(i, i + space));
    if (!/^[1-9]\d*$/.test(lenText)) throw new TarError("malformed pax record (bad length)", at);
    const end = i + Number(lenText);
    if (end > data.length || end <= i + space + 1 || data[end - 1] !== 0x0a) throw new TarError("malformed pax record (length does not match)", at);
    const record = text(data.subarray(i + space + 1, end - 1), at, "pax record", false);
    const eq = record.indexOf("=");
    if (eq <= 0) throw new TarError("malformed pax record (no key=value)", at);
    const key = record.slice(0, eq);
    const value = record.slice(eq + 1);
    if (key === "path" || key === "linkpath") {
      if (value.includes("\0")) throw new TarError(`pax ${key} contains a NUL byte`, at);
      out[key] = value === "" ? null : value;
    } else if (key === "size") {
      if (value !== "" && !/^\d{1,15}$/.test(value)) throw new TarError(`pax size is not a number: ${JSON.stringify(value)}`, at);
      out.size = value === "" ? null : Number(value);
    }
    i = end;
  }
  return out;
}

// ---- writer ----

export type TarWriteEntry = {
  path: string; // relative, '/'-separated; directories without a trailing '/'
  type: "file" | "directory" | "symlink" | "hardlink";
  mode: number;
  data?: Uint8Array;
  linkTarget?: string; // symlinks: relative to the link's folder; hardlinks: to the archive root
};

const OCTAL_MAX_SIZE = 0o77777777777;

export function writeTar(entries: readonly TarWriteEntry[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    const name = e.type === "directory" ? `${e.path.replace(/\/+$/, "")}/` : e.path;
    const data = e.type === "file" ? (e.data ?? new Uint8Array(0)) : new Uint8Array(0);
    const link = e.type === "symlink" || e.type === "hardlink" ? (e.linkTarget ?? "") : "";
    if (e.path === "") throw new TarError("an entry has an empty path");
    if (link === "" && e.type !== "file" && e.type !== "directory") throw new TarError(`${e.type} '${e.path}' has no target`);
    const split = splitUstarName(name);
    const pax: [string, string][] = [];
    if (!split) pax.push(["path", name]);
    if (encoder.encode(link).length > 100) pax.push(["linkpath", link]);
    if (data.length > OCTAL_MAX_SIZE) pax.push(["size", String(data.length)]);
    if (pax.length > 0) {
      const body = encodePax(pax);
      parts.push(header({ name: paxName(name), prefix: "", mode: 0o644, size: body.length, typeflag: "x", link: "" }), padded(body));
    }
    const typeflag = { file: "0", directory: "5", symlink: "2", hardlink: "1" }[e.type];
    parts.push(
      header({
        name: split ? split.name : truncateUtf8(name, 100),
        prefix: split ? split.prefix : "",
        mode: e.mode,
        size: data.length,
        typeflag,
        link: encoder.encode(link).length > 100 ? truncateUtf8(link, 100) : link,
      }),
      padded(data),
    );
  }
  parts.push(new Uint8Array(BLOCK * 2));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ustar stores up to 255 bytes of path as prefix (≤155) + '/' + name (≤100); longer
// paths go into a pax header.
function splitUstarName(path: string): { prefix: string; name: string } | null {
  if (encoder.encode(path).length <= 100) return { prefix: "", name: path };
  for (let i = path.indexOf("/"); i > 0; i = path.indexOf("/", i + 1)) {
    const prefix = path.slice(0, i);
    const name = path.slice(i + 1);
    if (name !== "" && name !== "/" && encoder.encode(prefix).length <= 155 && encoder.encode(name).length <= 100) return { prefix, name };
  }
  return null;
}

function paxName(path: string): string {
  const base = path.replace(/\/+$/, "").split("/").pop() ?? "entry";
  return truncateUtf8(`PaxHeaders/${base}`, 100);
}

function truncateUtf8(s: string, max: number): string {
  let out = "";
  for (const ch of s) {
    if (encoder.encode(out + ch).length > max) break;
    out += ch;
  }
  return out;
}

function encodePax(records: [string, string][]): Uint8Array {
  let all = "";
  for (const [k, v] of records) {
    const rest = ` ${k}=${v}\n`;
    const restLen = encoder.encode(rest).length;
    let len = restLen + 1;
    while (String(len).length + restLen !== len) len = String(len).length + restLen;
    all += `${len}${rest}`;
  }
  return encoder.encode(all);
}

function header(h: { name: string; prefix: string; mode: number; size: number; typeflag: string; link: string }): Uint8Array {
  const b = new Uint8Array(BLOCK);
  put(b, 0, 100, h.name);
  octal(b, 100, 8, h.mode & 0o7777);
  octal(b, 108, 8, 0);
  octal(b, 116, 8, 0);
  octal(b, 124, 12, h.size > OCTAL_MAX_SIZE ? 0 : h.size);
  octal(b, 136, 12, 0);
  b[156] = h.typeflag.charCodeAt(0);
  put(b, 157, 100, h.link);
  put(b, 257, 6, "ustar"); // "ustar\0"
  put(b, 263, 2, "00");
  put(b, 345, 155, h.prefix);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of b) sum += x;
  put(b, 148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  return b;
}

function put(b: Uint8Array, offset: number, length: number, s: string): void {
  const bytes = encoder.encode(s);
  if (bytes.length > length) throw new TarError(`'${s}' does not fit a ${length}-byte header field`);
  b.set(bytes, offset);
}

function octal(b: Uint8Array, offset: number, length: number, n: number): void {
  put(b, offset, length, `${n.toString(8).padStart(length - 1, "0")}\0`);
}

function padded(data: Uint8Array): Uint8Array {
  const size = Math.ceil(data.length / BLOCK) * BLOCK;
  if (size === data.length) return data;
  const out = new Uint8Array(size);
  out.set(data);
  return out;
}
