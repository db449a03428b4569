// The VCDIFF container (RFC 3284 §4): the file header and the window headers, with the
// three sections of each window handed out as views into the delta. The decoder
// (vcdiff-decode.ts) runs the instructions; this file only knows the layout, and refuses
// what neither it nor xdelta3-wasm reads: secondary compression (Debian's xdelta3 uses
// -S lzma by default; -S none makes a plain delta), custom code tables, VCD_TARGET windows.
import { FleetError } from '../errors.js';

const MAGIC = [0xd6, 0xc3, 0xc4, 0x00];
const VCD_DECOMPRESS = 0x01;
const VCD_CODETABLE = 0x02;
const VCD_APPHEADER = 0x04; // xdelta3 extension
const VCD_SOURCE = 0x01;
const VCD_TARGET = 0x02;
const VCD_ADLER32 = 0x04; // xdelta3 extension: 4 bytes, big-endian, after the section lengths
/** A window's encoding above this is refused: xdelta3's windows of 16 MiB at most encode in less. */
const MAX_ENCODING_BYTES = 256 * 1024 * 1024;
/** The largest application header read (a stream parse holds it whole first). */
const MAX_APPHEADER_BYTES = 64 * 1024;
const SECONDARY_NAMES: Record<number, string> = { 1: 'djw', 2: 'lzma', 16: 'fgk' };

export function isVcdiff(bytes: Uint8Array): boolean {
  return MAGIC.every((b, i) => bytes[i] === b);
}

export function deltaError(message: string): FleetError {
  return new FleetError('FC_ERR_DELTA', message);
}

/** A read past the bytes at hand: `needed` bytes from the reader's start were wanted. A stream reader reads on and parses again. */
class TruncatedDelta extends FleetError {
  constructor(
    message: string,
    readonly needed: number,
  ) {
    super('FC_ERR_DELTA', message);
  }
}

/** A position in a byte array, reading RFC 3284 integers and bytes with bounds checks. */
export class ByteReader {
  pos: number;
  /** `origin`: where `bytes` start in what the messages name (a window read from a stream). */
  constructor(
    readonly bytes: Uint8Array,
    pos: number,
    readonly what: string,
    readonly origin = 0,
  ) {
    this.pos = pos;
  }

  byte(): number {
    const value = this.bytes[this.pos];
    if (value === undefined) throw new TruncatedDelta(`VCDIFF ${this.what} truncated at byte ${this.origin + this.pos}`, this.pos + 1);
    this.pos++;
    return value;
  }

  /** RFC 3284 integer: big-endian base 128, high bit = more bytes follow. */
  varint(): number {
    let value = 0;
    for (let i = 0; i < 8; i++) {
      const b = this.byte();
      value = value * 128 + (b & 0x7f);
      if ((b & 0x80) === 0) return value;
    }
    throw deltaError(`VCDIFF ${this.what}: integer too long at byte ${this.origin + this.pos}`);
  }

  take(n: number): Uint8Array {
    this.require(n);
    const view = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return view;
  }

  /** Throws unless `n` bytes follow. */
  require(n: number): void {
    if (this.pos + n > this.bytes.length) throw new TruncatedDelta(`VCDIFF ${this.what} truncated: ${n} bytes wanted at byte ${this.origin + this.pos}`, this.pos + n);
  }
}

export interface VcdiffWindow {
  readonly index: number;
  /** Offset of the window header in the delta, for messages. */
  readonly offset: number;
  /** The window's source segment in the base (VCD_SOURCE); length 0 when it copies only from its own target. */
  readonly sourcePosition: number;
  readonly sourceLength: number;
  readonly targetLength: number;
  /** Adler-32 of the target window (xdelta3's VCD_ADLER32), when the encoder wrote one. */
  readonly adler32: number | undefined;
  readonly data: Uint8Array;
  readonly instructions: Uint8Array;
  readonly addresses: Uint8Array;
  /** Offset just after the window in the delta. */
  readonly end: number;
}

/** Checks the file header and returns where the first window starts. */
function readHeader(bytes: Uint8Array): number {
  if (!isVcdiff(bytes)) throw deltaError('not a VCDIFF delta (bad magic)');
  const r = new ByteReader(bytes, 4, 'header');
  const indicator = r.byte();
  if (indicator & VCD_DECOMPRESS) {
    const id = r.byte();
    const name = SECONDARY_NAMES[id] ?? `id ${id}`;
    throw deltaError(`VCDIFF delta uses secondary compression (${name}), which fleetcache cannot decode; make it with "xdelta3 -S none"`);
  }
  if (indicator & VCD_CODETABLE) throw deltaError('VCDIFF delta uses its own code table, which fleetcache cannot decode');
  if (indicator & ~(VCD_DECOMPRESS | VCD_CODETABLE | VCD_APPHEADER)) throw deltaError(`VCDIFF header indicator 0x${indicator.toString(16)} has unknown bits`);
  if (indicator & VCD_APPHEADER) {
    // xdelta3 writes the file names and their compression there: a few hundred bytes
    const length = r.varint();
    if (length > MAX_APPHEADER_BYTES) throw deltaError(`VCDIFF application header is ${length} bytes long, above the ${MAX_APPHEADER_BYTES} fleetcache reads`);
    r.take(length);
  }
  return r.pos;
}

function readWindow(r: ByteReader, index: number): VcdiffWindow {
  const offset = r.origin + r.pos;
  const where = `window ${index} (byte ${offset})`;
  const indicator = r.byte();
  if (indicator & VCD_TARGET) throw deltaError(`VCDIFF ${where} copies from earlier target windows (VCD_TARGET), which fleetcache cannot decode`);
  if (indicator & ~(VCD_SOURCE | VCD_ADLER32)) throw deltaError(`VCDIFF ${where}: unknown indicator bits 0x${indicator.toString(16)}`);
  const sourceLength = indicator & VCD_SOURCE ? r.varint() : 0;
  const sourcePosition = indicator & VCD_SOURCE ? r.varint() : 0;
  const encodingLength = r.varint();
  if (encodingLength > MAX_ENCODING_BYTES) throw deltaError(`VCDIFF ${where} is ${encodingLength} bytes long, above the ${MAX_ENCODING_BYTES} fleetcache reads`);
  r.require(encodingLength); // a stream reader reads the whole window at once
  const end = r.pos + encodingLength;
  const targetLength = r.varint();
  if (r.byte() !== 0) throw deltaError(`VCDIFF ${where} uses secondary compression, which fleetcache cannot decode`);
  const dataLength = r.varint();
  const instructionsLength = r.varint();
  const addressesLength = r.varint();
  let adler32: number | undefined;
  if (indicator & VCD_ADLER32) {
    const b = r.take(4);
    adler32 = ((b[0] as number) * 2 ** 24 + (((b[1] as number) << 16) | ((b[2] as number) << 8) | (b[3] as number))) >>> 0;
  }
  const data = r.take(dataLength);
  const instructions = r.take(instructionsLength);
  const addresses = r.take(addressesLength);
  if (r.pos !== end) throw deltaError(`VCDIFF ${where}: its length (${encodingLength}) does not match its sections`);
  return { index, offset, sourcePosition, sourceLength, targetLength, adler32, data, instructions, addresses, end: r.origin + end };
}

/** The windows of a delta, in order; the header is checked before the first one. */
export function* vcdiffWindows(bytes: Uint8Array): Generator<VcdiffWindow> {
  const r = new ByteReader(bytes, readHeader(bytes), 'delta');
  for (let index = 0; r.pos < bytes.length; index++) yield readWindow(r, index);
}

/**
 * The windows of a delta read from `chunks` as they come (a file, a decompression): memory
 * is about one window's encoding, whatever the size of the delta. Checked as vcdiffWindows
 * checks them.
 */
export async function* vcdiffWindowsFrom(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<VcdiffWindow> {
  const input = new ChunkQueue(chunks[Symbol.asyncIterator]());
  await input.has(MAGIC.length); // a first chunk shorter than the magic number
  const start = await input.parse((bytes) => readHeader(bytes));
  input.consume(start);
  for (let index = 0; await input.has(1); index++) {
    const origin = input.consumed;
    const w = await input.parse((bytes) => readWindow(new ByteReader(bytes, 0, 'delta', origin), index));
    input.consume(w.end - origin);
    yield w;
  }
}

/** Bytes from an async iterator, kept as the chunks that came until a parse needs them joined. */
class ChunkQueue {
  #chunks: Uint8Array[] = [];
  #length = 0;
  #ended = false;
  /** Bytes consumed since the start. */
  consumed = 0;

  constructor(readonly source: AsyncIterator<Uint8Array>) {}

  /** Whether `n` bytes are at hand, reading on until they are or the source ends. */
  async has(n: number): Promise<boolean> {
    while (this.#length < n && !this.#ended) {
      const next = await this.source.next();
      if (next.done) this.#ended = true;
      else if (next.value.length > 0) {
        this.#chunks.push(next.value);
        this.#length += next.value.length;
      }
    }
    return this.#length >= n;
  }

  /** Runs `parse` on the bytes at hand, reading as many more as it wanted while it runs short. */
  async parse<T>(parse: (bytes: Uint8Array) => T): Promise<T> {
    for (;;) {
      if (this.#chunks.length > 1) this.#chunks = [Buffer.concat(this.#chunks)];
      try {
        return parse(this.#chunks[0] ?? new Uint8Array(0));
      } catch (err) {
        if (!(err instanceof TruncatedDelta) || !(await this.has(err.needed))) throw err;
      }
    }
  }

  consume(n: number): void {
    const first = this.#chunks[0];
    if (first) this.#chunks[0] = first.subarray(n); // parse left one chunk
    this.#length -= n;
    this.consumed += n;
  }
}

/** The file header the encoder writes: no secondary compression, code table or application header. */
export const VCDIFF_HEADER: Uint8Array = Uint8Array.from([...MAGIC, 0]);

/** An RFC 3284 integer (big-endian base 128). */
function encodeVarint(value: number): number[] {
  const out = [value % 128];
  for (let rest = Math.floor(value / 128); rest > 0; rest = Math.floor(rest / 128)) out.unshift((rest % 128) | 0x80);
  return out;
}

/**
 * The windows of the VCDIFF `bytes` (checked as vcdiffWindows checks them) without its file
 * header, each VCD_SOURCE segment moved `shift` bytes further into the source: the output of
 * an encode against a segment of the base, put in the coordinates of the whole base (a window
 * names its own source segment, RFC 3284 §4.2, so windows so shifted can follow each other).
 * Returns views into `bytes`, and the new window headers.
 */
export function shiftedWindows(bytes: Uint8Array, shift: number): Uint8Array[] {
  const parts: Uint8Array[] = [];
  for (const w of vcdiffWindows(bytes)) {
    const r = new ByteReader(bytes, w.offset, 'window');
    const indicator = r.byte();
    if (indicator & VCD_SOURCE) {
      r.varint();
      r.varint();
      parts.push(Uint8Array.from([indicator, ...encodeVarint(w.sourceLength), ...encodeVarint(w.sourcePosition + shift)]));
    } else {
      parts.push(Uint8Array.of(indicator));
    }
    parts.push(bytes.subarray(r.pos, w.end));
  }
  return parts;
}
