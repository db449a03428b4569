// What the crash tests share (test/store/crash.test.ts, test/cache/crash.test.ts): seeded
// randomness whose seed the test prints, to replay a failure, and a look at the files left.
import { readdirSync } from 'node:fs';
import path from 'node:path';
import type { Test } from 'tap';
import { prng } from '../../src/run/scheduler.js';

interface Seeded {
  readonly seed: number;
  /** In [0, 1). */
  random(): number;
  pick<T>(xs: readonly T[]): T;
  /** `size` random bytes. */
  bytes(size: number): Buffer;
}

/** A generator seeded from $FLEETCACHE_CRASH_SEED, else at random; the seed is printed in `t`'s output. */
export function seeded(t: Test): Seeded {
  const seed = Number(process.env.FLEETCACHE_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
  t.comment(`seed ${seed} (FLEETCACHE_CRASH_SEED=${seed} replays it)`);
  const random = prng(BigInt(seed));
  return {
    seed,
    random,
    pick: (xs) => xs[Math.floor(random() * xs.length)]!,
    bytes: (size) => {
      const words = new Uint32Array(Math.ceil(size / 4));
      for (let i = 0; i < words.length; i++) words[i] = Math.floor(random() * 2 ** 32);
      return Buffer.from(words.buffer, 0, size);
    },
  };
}

/** Every file under `dir` (none when it does not exist), relative to it. */
export function filesUnder(dir: string, rel = ''): string[] {
  let entries;
  try {
    entries = readdirSync(path.join(dir, rel), { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((e) => (e.isDirectory() ? filesUnder(dir, path.join(rel, e.name)) : [path.join(rel, e.name)]));
}
