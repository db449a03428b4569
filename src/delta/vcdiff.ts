// Just enough of RFC 3284 (VCDIFF) to size a decode before running it and to refuse deltas
// xdelta3-wasm cannot read: its build has no secondary compressors, so deltas made by
// Debian's xdelta3 with the default -S lzma, or -S djw/fgk, must be refused up front.
import { FleetError } from '../errors.js';

const MAGIC = [0xd6, 0xc3, 0xc4, 0x00];
const VCD_DECOMPRESS = 0x01;
const VCD_CODETABLE = 0x02;
const VCD_APPHEADER = 0x04; // xdelta3 extension
const VCD_SOURCE = 0x01;
const VCD_TARGET = 0x02;
const SECONDARY_NAMES: Record<number, string> = { 1: 'djw', 2: 'lzma', 16: 'fgk' };

export function isVcdiff(bytes: Uint8Array): boolean {
  return MAGIC.every((b, i) => bytes[i] === b);
}

class Reader {
  pos: number;
  constructor(readonly bytes: Uint8Array, pos: number) {
    this.pos = pos;
  }

  byte(): number {
    const value = this.bytes[this.pos++];
    if (value === undefined) throw new FleetError('FC_ERR_DELTA', `VCDIFF delta truncated at byte ${this.pos - 1}`);
    return value;
  }

  /** RFC 3284 integer: big-endian base 128, high bit = more bytes follow. */
  varint(): number {
    let value = 0;
    for (let i = 0; i < 10; i++) {
      const b = this.byte();
      value = value * 128 + (b & 0x7f);
      if ((b & 0x80) === 0) return value;
    }
    throw new FleetError('FC_ERR_DELTA', `VCDIFF integer too long at byte ${this.pos}`);
  }

  skip(n: number): void {
    if (this.pos + n > this.bytes.length) throw new FleetError('FC_ERR_DELTA', `VCDIFF delta truncated: section of ${n} bytes at byte ${this.pos}`);
    this.pos += n;
  }
}

export interface VcdiffSummary {
  /** The size of the file the delta rebuilds (sum of the target windows). */
  readonly targetSize: number;
  readonly windows: number;
}

/** Walks the header and window headers; throws FC_ERR_DELTA naming what is wrong. */
export function inspectVcdiff(bytes: Uint8Array): VcdiffSummary {
  if (!isVcdiff(bytes)) throw new FleetError('FC_ERR_DELTA', 'not a VCDIFF delta (bad magic)');
  const r = new Reader(bytes, 4);
  const indicator = r.byte();
  if (indicator & VCD_DECOMPRESS) {
    const id = r.byte();
    const name = SECONDARY_NAMES[id] ?? `id ${id}`;
    throw new FleetError('FC_ERR_DELTA', `VCDIFF delta uses secondary compression (${name}), which xdelta3-wasm cannot decode; make it with "xdelta3 -S none"`);
  }
  if (indicator & VCD_CODETABLE) r.skip(r.varint());
  if (indicator & VCD_APPHEADER) r.skip(r.varint());
  let targetSize = 0;
  let windows = 0;
  while (r.pos < bytes.length) {
    const win = r.byte();
    if (win & (VCD_SOURCE | VCD_TARGET)) {
      r.varint(); // source segment length
      r.varint(); // source segment position
    }
    const encodingLength = r.varint();
    const start = r.pos;
    targetSize += r.varint();
    if (r.byte() !== 0) throw new FleetError('FC_ERR_DELTA', `VCDIFF window ${windows} uses secondary compression, which xdelta3-wasm cannot decode`);
    r.pos = start;
    r.skip(encodingLength);
    windows++;
  }
  return { targetSize, windows };
}
