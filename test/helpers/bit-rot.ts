// Bit rot in a stored copy, as a failing disk leaves it: one byte of a file changed in
// place, its size kept, so that only its digest tells.
import { readFileSync, writeFileSync } from 'node:fs';

/** Flips the bits of the byte at `at` (the middle one by default) of `file`, in place; the file's new bytes. */
export function rotInPlace(file: string, at?: number): Buffer {
  const bytes = readFileSync(file);
  bytes[at ?? bytes.length >> 1]! ^= 0xff;
  writeFileSync(file, bytes);
  return bytes;
}
