// Small bodies held in memory for hits (disk-store.ts), copied into slabs of 1 MiB rather than
// kept one buffer each. Each buffer of its own is a malloc'd block and an ArrayBuffer that
// every full collection sweeps, and a process holding 16,000 of them (the 64 MiB budget of
// 4 KiB bodies) spends 10-20% more CPU on each later cold miss than one holding none. Slabs
// take a small part of that away (about 4%, within the noise of the measure: bench/RESULTS.md,
// "cold small after hot small"), and bound the memory the bodies really take, malloc's
// overhead and the holes they leave included.
//
// A slab's bytes are never written again once handed out (a body may still be queued on a
// socket after its entry is gone): slabs are filled from their start to their end, and
// one whose bodies are all released is dropped, not reused. The budget counts whole slabs,
// so what the process holds never exceeds it, room a released body left in a slab still
// in use included.

/** The size of a slab: 64 of them make the default budget; a body is at most 16 KiB (SMALL_MAX). */
const SLAB_SIZE = 1024 * 1024;

interface Slab {
  readonly bytes: Buffer;
  /** Where the next body goes. */
  used: number;
  /** Bodies held in it and not released yet. */
  live: number;
}

export class BodySlabs {
  readonly #budget: number;
  readonly #slabSize: number;
  /** Slabs holding bodies, and the one being filled, by their memory. */
  readonly #slabs = new Map<ArrayBufferLike, Slab>();
  #filling: Slab | undefined;

  constructor(budget: number, slabSize = SLAB_SIZE) {
    this.#budget = budget;
    this.#slabSize = slabSize;
  }

  /** The bytes of the slabs held (what the budget bounds). */
  get bytes(): number {
    return this.#slabs.size * this.#slabSize;
  }

  /** A copy of `body` in a slab, or undefined when it is larger than a slab or the budget has no slab left for it. */
  hold(body: Buffer): Buffer | undefined {
    if (body.length > this.#slabSize) return undefined;
    let slab = this.#filling;
    if (!slab || slab.used + body.length > this.#slabSize) {
      if (slab && slab.live === 0) this.#slabs.delete(slab.bytes.buffer);
      this.#filling = undefined;
      if (this.bytes + this.#slabSize > this.#budget) return undefined;
      // allocUnsafeSlow: a slab of its own memory, not a slice of node's shared pool
      slab = { bytes: Buffer.allocUnsafeSlow(this.#slabSize), used: 0, live: 0 };
      this.#slabs.set(slab.bytes.buffer, slab);
      this.#filling = slab;
    }
    const copy = slab.bytes.subarray(slab.used, slab.used + body.length);
    body.copy(copy);
    slab.used += body.length;
    slab.live++;
    return copy;
  }

  /** Gives back a copy `hold` made: its slab is dropped with its last body, unless it is still being filled. */
  release(copy: Buffer): void {
    const slab = this.#slabs.get(copy.buffer);
    if (!slab) return;
    slab.live--;
    if (slab.live === 0 && slab !== this.#filling) this.#slabs.delete(copy.buffer);
  }
}
