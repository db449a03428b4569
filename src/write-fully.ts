import type { FileHandle } from 'node:fs/promises';

/**
 * Writes all of `bytes` to `fh` at `position` (undefined: at the file's current position),
 * looping over short writes. A write may take only part of what it was given, without an
 * error: a filesystem with less room than that (tmpfs) takes what fits, and the next write
 * is the one that fails with ENOSPC. Taking a write's length for what it wrote left the
 * rest of the chunk a hole of zeros once the next chunk found room (a blob kept with wrong
 * bytes under its digest).
 */
export async function writeFully(fh: FileHandle, bytes: Uint8Array, position?: number): Promise<void> {
  for (let done = 0; done < bytes.length;) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.length - done, position === undefined ? null : position + done);
    // (a regular file never takes nothing without an error; looping on it would never end)
    if (bytesWritten === 0) throw Object.assign(new Error('a write took no bytes'), { code: 'EIO' });
    done += bytesWritten;
  }
}
