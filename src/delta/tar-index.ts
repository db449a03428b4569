// Where each entry of a tar lies, learnt from its 512-byte headers while the file streams by
// (the bytes are handed over in order, in pieces of any size; nothing is kept but the index).
// The windowed encoder (xdelta.ts, plan.ts) uses it to find, for a piece of the new tar, the
// range of the base tar that holds the same paths, or the same content under another path.
// Reads what src/pack/packer.ts writes (ustar, pax headers for long names) and GNU long
// names; anything else (a file that is not a tar, a corrupt header) ends the index, and the
// encoder then maps the target onto the base by relative position instead.
// Not tar-stream (which src/pack/unpack.ts uses): its extract swallows pax and GNU long-name
// headers, so the byte offset of an entry cannot be counted from what it emits.
import { crc32 } from 'node:zlib';

export interface TarEntry {
  /** The entry's path, from a pax or GNU long-name header when there is one. */
  readonly path: string;
  /** Offset of its first header (its pax or long-name header, when it has one). */
  readonly start: number;
  /** Offset of its data (after its last header). */
  readonly dataStart: number;
  /** Offset just after its data and padding: the next entry's start. */
  readonly end: number;
  /** `size:crc32` of the data of a regular file of CONTENT_KEY_MIN bytes or more: finds renamed files. */
  readonly contentKey: string | undefined;
}

export interface TarIndex {
  /** The entries in file order. */
  readonly entries: readonly TarEntry[];
  /** Entry number by path (the last one, should a path repeat). */
  readonly byPath: ReadonlyMap<string, number>;
  /** Entry numbers by content key, in file order. */
  readonly byContent: ReadonlyMap<string, readonly number[]>;
}

const BLOCK = 512;
/** Smaller files are not worth looking up by content (their bytes cost less than a search). */
export const CONTENT_KEY_MIN = 256;
/** pax and long-name data above this is not a header packer.ts writes: not indexed. */
const MAX_META = 1 << 20;

function octal(block: Uint8Array, at: number, length: number): number | undefined {
  const first = block[at] as number;
  if (first & 0x80) {
    // GNU base-256: big-endian, high bit of the first byte set (sizes of 8 GiB and more)
    let value = first & 0x7f;
    for (let i = 1; i < length; i++) value = value * 256 + (block[at + i] as number);
    return value;
  }
  let value = 0;
  let digits = 0;
  for (let i = at; i < at + length; i++) {
    const c = block[i] as number;
    if (c === 0 || c === 0x20) {
      if (digits > 0) break;
      continue;
    }
    if (c < 0x30 || c > 0x37) return undefined;
    value = value * 8 + (c - 0x30);
    digits++;
  }
  return value;
}

function text(block: Uint8Array, at: number, length: number): string {
  let end = at;
  while (end < at + length && block[end] !== 0) end++;
  return Buffer.from(block.buffer, block.byteOffset + at, end - at).toString('utf8');
}

/** True for a valid ustar/GNU/v7 header (its checksum matches). */
function checksumOk(block: Uint8Array): boolean {
  const recorded = octal(block, 148, 8);
  if (recorded === undefined) return false;
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (block[i] as number);
  return sum === recorded;
}

/** Each pax record is `<length> <key>=<value>\n`, its length counted in bytes (not characters). */
function paxPath(data: Uint8Array): string | undefined {
  const records = Buffer.from(data.buffer, data.byteOffset, data.length);
  let path: string | undefined;
  let pos = 0;
  while (pos < records.length) {
    const space = records.indexOf(0x20, pos);
    const length = Number(records.toString('latin1', pos, space));
    if (space < 0 || !Number.isInteger(length) || length <= 0 || pos + length > records.length) break;
    const record = records.toString('utf8', space + 1, pos + length - 1);
    if (record.startsWith('path=')) path = record.slice(5);
    pos += length;
  }
  return path;
}

type State = 'header' | 'meta' | 'data' | 'done';

/** Builds a TarIndex from the bytes of a file handed to update() in order. */
export class TarIndexer {
  readonly #entries: TarEntry[] = [];
  readonly #header = new Uint8Array(BLOCK);
  #headerFill = 0;
  #state: State = 'header';
  #valid = true;
  /** Offset of the next byte update() receives. */
  #pos = 0;
  /** Bytes left of the current data (or meta) and its padding. */
  #left = 0;
  #padding = 0;
  // the entry being read
  #start = -1;
  #longPath: string | undefined;
  #meta: Uint8Array[] = [];
  #metaType = 0;
  #path = '';
  #dataStart = 0;
  #crc: number | undefined;
  #size = 0;

  update(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length && this.#state !== 'done') {
      if (this.#state === 'header') {
        const n = Math.min(BLOCK - this.#headerFill, chunk.length - at);
        this.#header.set(chunk.subarray(at, at + n), this.#headerFill);
        this.#headerFill += n;
        at += n;
        this.#pos += n;
        if (this.#headerFill === BLOCK) {
          this.#headerFill = 0;
          this.#onHeader(this.#pos - BLOCK);
        }
        continue;
      }
      const n = Math.min(this.#left, chunk.length - at);
      const piece = chunk.subarray(at, at + n);
      const dataLeft = this.#left - this.#padding; // bytes of data (not padding) still to come
      const dataPiece = piece.subarray(0, Math.max(0, Math.min(n, dataLeft)));
      if (this.#state === 'meta') this.#meta.push(Uint8Array.from(dataPiece));
      else if (this.#crc !== undefined && dataPiece.length > 0) this.#crc = crc32(dataPiece, this.#crc);
      this.#left -= n;
      at += n;
      this.#pos += n;
      if (this.#left === 0) this.#onDataEnd();
    }
    if (this.#state === 'done') this.#pos += chunk.length - at;
  }

  /** The index, or undefined when the bytes were not a tar this reads. */
  finish(): TarIndex | undefined {
    if (!this.#valid || this.#state === 'meta' || this.#state === 'data' || this.#headerFill !== 0) return undefined;
    const byPath = new Map<string, number>();
    const byContent = new Map<string, number[]>();
    this.#entries.forEach((e, i) => {
      byPath.set(e.path, i);
      if (e.contentKey === undefined) return;
      const list = byContent.get(e.contentKey);
      if (list) list.push(i);
      else byContent.set(e.contentKey, [i]);
    });
    return { entries: this.#entries, byPath, byContent };
  }

  #onHeader(offset: number): void {
    const block = this.#header;
    if (block.every((b) => b === 0)) {
      // end of archive; a header in the middle of an entry's extensions is not one
      if (this.#start >= 0) this.#valid = false;
      this.#state = 'done';
      return;
    }
    const size = octal(block, 124, 12);
    if (!checksumOk(block) || size === undefined) {
      this.#valid = false;
      this.#state = 'done';
      return;
    }
    if (this.#start < 0) this.#start = offset;
    const type = block[156] as number;
    this.#size = size;
    this.#padding = (BLOCK - (size % BLOCK)) % BLOCK;
    this.#left = size + this.#padding;
    // 'x' pax, 'L' GNU long name: their data names the next entry; 'g', 'K': skipped alike
    if (type === 0x78 || type === 0x4c || type === 0x67 || type === 0x4b) {
      if (size > MAX_META) {
        this.#valid = false;
        this.#state = 'done';
        return;
      }
      this.#metaType = type;
      this.#meta = [];
      this.#state = 'meta';
    } else {
      let name = text(block, 0, 100);
      // POSIX ustar ("ustar\0") splits long names into prefix/name; GNU ("ustar  ") does not
      if (block[345] !== 0 && text(block, 257, 6) === 'ustar') name = `${text(block, 345, 155)}/${name}`;
      this.#path = this.#longPath ?? name;
      this.#dataStart = offset + BLOCK;
      // '0' or NUL: a regular file; hard links and others carry no data of their own
      const regular = type === 0x30 || type === 0;
      this.#crc = regular && size >= CONTENT_KEY_MIN ? 0 : undefined;
      this.#state = 'data';
    }
    if (this.#left === 0) this.#onDataEnd();
  }

  #onDataEnd(): void {
    if (this.#state === 'meta') {
      const data = Buffer.concat(this.#meta);
      this.#meta = [];
      if (this.#metaType === 0x78) this.#longPath = paxPath(data) ?? this.#longPath;
      else if (this.#metaType === 0x4c) this.#longPath = text(data, 0, data.length);
      this.#state = 'header';
      return;
    }
    const contentKey = this.#crc === undefined ? undefined : `${this.#size}:${this.#crc >>> 0}`;
    this.#entries.push({ path: this.#path, start: this.#start, dataStart: this.#dataStart, end: this.#pos, contentKey });
    this.#start = -1;
    this.#longPath = undefined;
    this.#state = 'header';
  }
}

/** The index of a tar held in memory. */
export function indexTarBytes(bytes: Uint8Array): TarIndex | undefined {
  const indexer = new TarIndexer();
  indexer.update(bytes);
  return indexer.finish();
}
