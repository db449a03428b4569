// The header blocks of one tar entry as the packer writes them: byte for byte what
// tar-stream 3.2.2 wrote (headers.js `encode`, pack.js `_encodePax`), so that a tree packs to
// the same tar, and the same digest, as it did when tar-stream framed it. The packer writes
// the headers itself because tar-stream's per-entry streams (a Writable, callbacks, three
// pushes) cost more than reading a small file does.
//
// ustar; a name over 100 bytes is split at a `/` into prefix and name; a pax header (path,
// linkpath) when the name is not ASCII or does not split, or the link target is over 100
// bytes. Owner 0:0 without names, one fixed mtime, no device numbers.

/** 2000-01-01T00:00:00Z: fixed, and unlike 0 it does not make GNU tar warn on extract. */
const PACK_MTIME_SECONDS = 946_684_800;

export const TAR_BLOCK = 512;

export type EntryType = 'file' | 'directory' | 'symlink';

export interface EntryFields {
  /** A directory's name ends in `/`. */
  readonly name: string;
  /** The whole st_mode; only its low 12 bits are written. */
  readonly mode: number;
  readonly type: EntryType;
  /** The body's size: 0 but for a file. */
  readonly size: number;
  readonly linkname?: string;
}

const TYPEFLAG: Readonly<Record<EntryType | 'pax-header', number>> = { file: 0x30, symlink: 0x32, directory: 0x35, 'pax-header': 0x78 };

/** `value` in octal, `digits` wide, then a space; all sevens when it does not fit. */
function octal(value: number, digits: number): string {
  const text = value.toString(8);
  return text.length > digits ? `${'7'.repeat(digits)} ` : `${text.padStart(digits, '0')} `;
}

/**
 * The fields every header has the same: owner 0:0 without names, the fixed mtime, magic and
 * version, no device numbers. Each header starts as a copy of it, so they are formatted once.
 */
const USTAR_TEMPLATE = Buffer.alloc(TAR_BLOCK);
USTAR_TEMPLATE.write(octal(0, 6), 108, 'latin1'); // uid
USTAR_TEMPLATE.write(octal(0, 6), 116, 'latin1'); // gid
USTAR_TEMPLATE.write(octal(PACK_MTIME_SECONDS, 11), 136, 'latin1');
USTAR_TEMPLATE.write('ustar\u000000', 257, 'latin1'); // magic and version
USTAR_TEMPLATE.write(octal(0, 6), 329, 'latin1'); // devmajor
USTAR_TEMPLATE.write(octal(0, 6), 337, 'latin1'); // devminor

/** The bytes of `buf` from `start`, `length` of them, summed. */
function byteSum(buf: Buffer, start: number, length: number): number {
  let sum = 0;
  for (let i = start; i < start + length; i++) sum += buf[i]!;
  return sum;
}

/** The template's share of every checksum, the checksum field itself counted as spaces. */
const TEMPLATE_SUM = 8 * 0x20 + byteSum(USTAR_TEMPLATE, 0, TAR_BLOCK);

/** One ustar header block. */
function ustar(name: string, prefix: string, type: EntryType | 'pax-header', mode: number, size: number, linkname: string | undefined): Buffer {
  // a slice of Node's buffer pool: not a new ArrayBuffer (and its garbage) per entry
  const buf = Buffer.allocUnsafe(TAR_BLOCK);
  buf.set(USTAR_TEMPLATE);
  // the checksum adds up only the fields written here, where the template has zeros (not all 512 bytes)
  let sum = TEMPLATE_SUM + byteSum(buf, 0, buf.write(name, 0));
  sum += byteSum(buf, 100, buf.write(octal(mode & 0o7777, 6), 100, 'latin1'));
  if (size.toString(8).length > 11) {
    // base-256 for 8 GiB and over
    buf[124] = 0x80;
    for (let i = 11, rest = size; i > 0; i--, rest = Math.floor(rest / 0x100)) buf[124 + i] = rest & 0xff;
  } else buf.write(octal(size, 11), 124, 'latin1');
  sum += byteSum(buf, 124, 12);
  buf[156] = TYPEFLAG[type];
  sum += TYPEFLAG[type];
  if (linkname) sum += byteSum(buf, 157, buf.write(linkname, 157));
  if (prefix) sum += byteSum(buf, 345, buf.write(prefix, 345));
  buf.write(octal(sum, 6), 148, 'latin1');
  return buf;
}

/** `name` split as ustar holds it (prefix, name), or undefined when it needs a pax header. */
function splitName(whole: string): { name: string; prefix: string } | undefined {
  if (Buffer.byteLength(whole) !== whole.length) return undefined; // not ASCII
  let name = whole;
  let prefix = '';
  while (name.length > 100) {
    const slash = name.indexOf('/');
    if (slash === -1) return undefined;
    prefix += prefix ? `/${name.slice(0, slash)}` : name.slice(0, slash);
    name = name.slice(slash + 1);
  }
  return prefix.length > 155 ? undefined : { name, prefix };
}

/** A pax record: its own length in decimal, a space, `key=value`, a newline. */
function paxRecord(key: string, value: string): string {
  const rest = ` ${key}=${value}\n`;
  const length = Buffer.byteLength(rest);
  const digits = String(length).length;
  return `${length + digits + (String(length + digits).length > digits ? 1 : 0)}${rest}`;
}

/** The header blocks of an entry: one ustar block, or a pax header, its records padded to a block, and a ustar block. */
export function entryHeader(entry: EntryFields): Buffer {
  const { mode, type, size, linkname } = entry;
  const split = splitName(entry.name);
  if (split && !(linkname && Buffer.byteLength(linkname) > 100)) return ustar(split.name, split.prefix, type, mode, size, linkname);
  const records = Buffer.from(`${paxRecord('path', entry.name)}${linkname ? paxRecord('linkpath', linkname) : ''}`);
  const paxLinkname = linkname ? 'PaxHeader' : undefined;
  const padded = Buffer.alloc(Math.ceil(records.length / TAR_BLOCK) * TAR_BLOCK);
  records.copy(padded);
  return Buffer.concat([ustar('PaxHeader', '', 'pax-header', mode, records.length, paxLinkname), padded, ustar('PaxHeader', '', type, mode, size, paxLinkname)]);
}
