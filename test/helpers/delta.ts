// encodeDelta and compressDelta (which write files) with their output read back into memory,
// for tests whose deltas are small.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compressDelta, type Compression } from '../../src/delta/compress.js';
import { vcdiffWindows } from '../../src/delta/vcdiff.js';
import { encodeDelta, type DeltaInput, type EncodeResult } from '../../src/delta/xdelta.js';

export async function encodeToBuffer(base: DeltaInput, target: DeltaInput, options: Parameters<typeof encodeDelta>[3] = {}): Promise<EncodeResult & { vcdiff: Buffer }> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetcache-test-delta-'));
  try {
    const file = join(dir, 'delta.vcdiff');
    const result = await encodeDelta(base, target, file, options);
    return { ...result, vcdiff: await readFile(file) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** compressDelta of a VCDIFF held in memory, read back. */
export async function compressToBuffer(vcdiff: Uint8Array, compression: Compression): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetcache-test-delta-'));
  try {
    await writeFile(join(dir, 'in'), vcdiff);
    await compressDelta(join(dir, 'in'), join(dir, 'out'), compression);
    return await readFile(join(dir, 'out'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

interface VcdiffSummary {
  /** The size of the file the delta rebuilds (sum of the target windows). */
  readonly targetSize: number;
  readonly windows: number;
  /** The largest target window: the decoder's working memory. */
  readonly largestWindow: number;
}

/** Walks the header and window headers of a delta held in memory; throws FC_ERR_DELTA naming what is wrong. */
export function inspectVcdiff(bytes: Uint8Array): VcdiffSummary {
  let targetSize = 0;
  let windows = 0;
  let largestWindow = 0;
  for (const w of vcdiffWindows(bytes)) {
    targetSize += w.targetLength;
    largestWindow = Math.max(largestWindow, w.targetLength);
    windows++;
  }
  return { targetSize, windows, largestWindow };
}
