// xdelta3-wasm 1.0.0, instantiated by us instead of through its JS wrapper, because the
// wrapper has defects measured on this project:
//  - the module declares a fixed 16 MiB memory (256 pages, maximum 256), so inputs above
//    about 5 MiB fail with "memory access out of bounds". We rewrite the memory section
//    (initial = maximum = the pages a job needs) before instantiating a fresh instance per
//    job; memory is never grown, so views into it stay valid for the whole job.
//  - malloc failures (pointer 0) and bogus output lengths are not checked, and pointers
//    above 2 GiB come back as negative numbers: we check all three.
//  - the fourth argument of xd3_encode_memory is xdelta3's flags word, not a speed
//    setting: compression level 9 is 9 << 20.
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { errorMessage, FleetError } from '../errors.js';

const PAGE = 65536;
/**
 * wasm32 addresses 4 GiB, but the module's sbrk computes the heap size as a 32-bit size_t:
 * with all 65536 pages it wraps to 0 and every malloc fails (measured). One page less works.
 */
export const MAX_MEMORY_BYTES = 65535 * PAGE;
const ORIGINAL_PAGES = 256;
const SECTION_MEMORY = 5;
/** ENOMEM as the module's libc numbers it. */
const XD3_ENOMEM = 48;

/** True for a FleetError that means "this job did not fit in wasm memory" (a smaller job may). */
export function isOutOfMemory(err: unknown): boolean {
  return err instanceof FleetError && err.details?.['outOfMemory'] === true;
}

// @types/node 20 does not declare the WebAssembly namespace; this is the part we use.
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
declare const WebAssembly: {
  instantiate(bytes: Uint8Array, imports: object): Promise<{ instance: { exports: object } }>;
};

interface Xd3Exports {
  readonly memory: WasmMemory;
  malloc(size: number): number;
  free(ptr: number): void;
  xd3_encode_memory(input: number, inputSize: number, source: number, sourceSize: number, output: number, outputSizePtr: number, outputMax: number, flags: number): number;
  xd3_strerror(code: number): number;
  _initialize?(): void;
}

let originalModule: Uint8Array | undefined;

function moduleBytes(): Uint8Array {
  if (!originalModule) {
    const dist = join(dirname(createRequire(import.meta.url).resolve('xdelta3-wasm/package.json')), 'dist');
    const file = readdirSync(dist).find((name) => name.endsWith('.wasm'));
    if (!file) throw new FleetError('FC_ERR_INTERNAL', `xdelta3-wasm: no .wasm file in ${dist}`);
    originalModule = readFileSync(join(dist, file));
  }
  return originalModule;
}

function readU32(bytes: Uint8Array, offset: number): { value: number; next: number } {
  let value = 0;
  let shift = 0;
  let pos = offset;
  for (;;) {
    const byte = bytes[pos++];
    if (byte === undefined) throw new FleetError('FC_ERR_INTERNAL', 'xdelta3-wasm: truncated module');
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return { value, next: pos };
    shift += 7;
  }
}

function writeU32(value: number): number[] {
  const out: number[] = [];
  let rest = value;
  do {
    let byte = rest & 0x7f;
    rest = Math.floor(rest / 128);
    if (rest > 0) byte |= 0x80;
    out.push(byte);
  } while (rest > 0);
  return out;
}

/** A copy of a wasm module whose single defined memory has `pages` initial and maximum pages. */
export function withMemoryPages(module: Uint8Array, pages: number): Uint8Array {
  let pos = 8; // magic + version
  while (pos < module.length) {
    const id = module[pos] as number;
    const size = readU32(module, pos + 1);
    const payloadStart = size.next;
    const payloadEnd = payloadStart + size.value;
    if (id === SECTION_MEMORY) {
      const count = readU32(module, payloadStart);
      if (count.value !== 1) throw new FleetError('FC_ERR_INTERNAL', `xdelta3-wasm: expected one memory, found ${count.value}`);
      const flags = module[count.next] as number;
      if (flags > 1) throw new FleetError('FC_ERR_INTERNAL', `xdelta3-wasm: unsupported memory limits flag ${flags}`);
      const payload = [...writeU32(1), 0x01, ...writeU32(pages), ...writeU32(pages)];
      const section = [SECTION_MEMORY, ...writeU32(payload.length), ...payload];
      const out = new Uint8Array(module.length - (payloadEnd - pos) + section.length);
      out.set(module.subarray(0, pos), 0);
      out.set(section, pos);
      out.set(module.subarray(payloadEnd), pos + section.length);
      return out;
    }
    pos = payloadEnd;
  }
  throw new FleetError('FC_ERR_INTERNAL', 'xdelta3-wasm: module has no memory section');
}

/** A buffer in wasm memory and a view of it. */
interface WasmArea {
  readonly ptr: number;
  readonly view: Uint8Array;
}

/** One xdelta3 instance sized for one job (many encode calls); dropped (and its memory freed by GC) afterwards. */
export class Xd3Instance {
  readonly #exports: Xd3Exports;
  #sizeCell: WasmArea | undefined;

  private constructor(exports: Xd3Exports) {
    this.#exports = exports;
  }

  /** Instantiates xdelta3 with at least `bytes` of linear memory (rounded up to pages). */
  static async create(bytes: number): Promise<Xd3Instance> {
    if (bytes > MAX_MEMORY_BYTES) {
      throw new FleetError('FC_ERR_DELTA', `delta job needs ${bytes} bytes of wasm memory, above the 4 GiB limit of xdelta3-wasm`);
    }
    const pages = Math.max(ORIGINAL_PAGES, Math.ceil(bytes / PAGE));
    let instance: { exports: object };
    try {
      ({ instance } = await WebAssembly.instantiate(withMemoryPages(moduleBytes(), pages), {}));
    } catch (err) {
      throw new FleetError('FC_ERR_DELTA', `cannot instantiate xdelta3 with ${pages * PAGE} bytes of memory: ${errorMessage(err)}`, {
        cause: err,
        details: { outOfMemory: true },
      });
    }
    // a module's exports are typed by nothing but the module: these are xdelta3-wasm's
    const exports = instance.exports as Xd3Exports;
    exports._initialize?.();
    return new Xd3Instance(exports);
  }

  /** Allocates `size` bytes in wasm memory and returns a view of them. */
  alloc(size: number, what: string): WasmArea {
    // malloc takes a 32-bit size: 4 GiB would wrap to 0 and "succeed"
    const ptr = size >= MAX_MEMORY_BYTES ? 0 : this.#exports.malloc(Math.max(size, 1)) >>> 0;
    if (ptr === 0) throw new FleetError('FC_ERR_DELTA', `xdelta3: cannot allocate ${size} bytes for the ${what}`, { details: { outOfMemory: true } });
    return { ptr, view: new Uint8Array(this.#exports.memory.buffer, ptr, size) };
  }

  /** Bytes of linear memory this instance has (fixed for its life). */
  get memoryBytes(): number {
    return this.#exports.memory.buffer.byteLength;
  }

  /**
   * Runs xd3_encode_memory on the first `inputLength` bytes of `input` against the first
   * `sourceLength` bytes of `source` (no source when undefined), writing into `output`, all
   * allocated with alloc() once and reused call after call (xdelta3 allocates and frees its
   * tables inside each call). Returns a view of the VCDIFF in `output`, valid until the next call.
   */
  encode(input: WasmArea, inputLength: number, source: WasmArea | undefined, sourceLength: number, output: WasmArea, flags: number): Uint8Array {
    if (inputLength > input.view.length || (source && sourceLength > source.view.length)) throw new FleetError('FC_ERR_INTERNAL', 'xdelta3: encode lengths exceed their buffers');
    this.#sizeCell ??= this.alloc(4, 'output size');
    const sizeCell = this.#sizeCell;
    const outputMax = output.view.length;
    let ret: number;
    try {
      ret = this.#exports.xd3_encode_memory(input.ptr, inputLength, source ? source.ptr : 0, source ? sourceLength : 0, output.ptr, sizeCell.ptr, outputMax, flags);
    } catch (err) {
      // RangeError or WebAssembly.RuntimeError (out of bounds): the job is lost, not the process.
      throw new FleetError('FC_ERR_DELTA', `xdelta3 encode crashed: ${errorMessage(err)}`, { cause: err });
    }
    if (ret !== 0) {
      throw new FleetError('FC_ERR_DELTA', `xdelta3 encode failed: ${this.#describe(ret)}`, { details: ret === XD3_ENOMEM ? { xd3Code: ret, outOfMemory: true } : { xd3Code: ret } });
    }
    const size = new DataView(this.#exports.memory.buffer).getUint32(sizeCell.ptr, true);
    if (size > outputMax) throw new FleetError('FC_ERR_DELTA', `xdelta3 encode returned a bogus output length ${size} (limit ${outputMax})`);
    return output.view.subarray(0, size);
  }

  #describe(code: number): string {
    if (code === 51) return 'output larger than the space reserved for it (ENOSPC)';
    if (code === XD3_ENOMEM) return 'out of memory (ENOMEM)';
    try {
      const ptr = this.#exports.xd3_strerror(code) >>> 0;
      const mem = new Uint8Array(this.#exports.memory.buffer);
      let end = ptr;
      while (end < mem.length && mem[end] !== 0) end++;
      const text = new TextDecoder().decode(mem.subarray(ptr, end));
      return text ? `${text} (${code})` : `code ${code}`;
    } catch {
      return `code ${code}`;
    }
  }
}
