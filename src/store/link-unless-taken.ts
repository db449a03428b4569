// A file written under a name of its own, linked into place only if the name is free: of
// several writers racing for one name, the first one's stays (link fails on a name taken,
// where rename would replace it).
import { linkSync, rmSync } from 'node:fs';

/** Links `temp` at `file` unless `file` exists (then false: the one there stays); `temp` is removed either way. */
export function linkUnlessTaken(temp: string, file: string): boolean {
  try {
    linkSync(temp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return false;
  } finally {
    rmSync(temp, { force: true });
  }
}
