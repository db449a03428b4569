import type { FileHandle } from 'node:fs/promises';

/**
 * Reads `dst.length` bytes of `fh` from `position`, looping over short reads. Returns how
 * many it read: fewer only when the file ends first, which each caller reports in its terms.
 */
export async function readFully(fh: FileHandle, dst: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < dst.length) {
    const { bytesRead } = await fh.read(dst, done, dst.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}
