// A named upload stores its blob, then writes the name that points at it. A process killed
// in between (SIGKILL, an OOM kill) would leave a blob no name points at and no prune looks
// at: nothing says it was stored for a name. So before the blob may become visible
// (BlobStore.put's beforeCommit) the upload writes a mark, an empty file whose name says who
// wrote it and which blob it is about to name; it removes the mark once the name, or the
// record that the blob went unnamed (context.ts replacedRecord), is written. A name uploaded
// again marks the blob it pointed at too, in the name's lock before the new record is written,
// until that blob is recorded as named by nothing: killed in between, the process would leave
// it named by nothing and recorded nowhere (routes/names.ts). A prune takes the marks a
// process killed left (pid-alive.ts isLeftover) as blobs to free, unless something names them
// by then (retention.ts).
//
// A mark is one file created, and later unlinked, per upload that stores a new blob or points
// a name at other bytes: no fsync. A SIGKILL keeps what the kernel was given; the blob's own fsyncs, after the mark,
// commit its directory entry with them on a journaling file system (ext4, xfs). Where one
// does not, a power loss may leak a blob's bytes, never lose a name: a mark only ever lets a
// prune look at a blob.
import { randomBytes } from 'node:crypto';
import { readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage, FleetError, isNoRoom, noRoomError } from '../errors.js';
import { isLeftover, startTimeOf } from '../pid-alive.js';
import { mkdirDurable } from '../store/durable.js';
import { formatDigest, isDigestAlgorithm, isStoredHex, type Digest } from '../store/digest.js';
import { isMissing } from '../store/missing.js';

/** A mark's file name: <pid>.<start time, or "-">.<12 hex>.<algo>-<hex>. */
const MARK = /^(\d+)\.(\d+|-)\.[0-9a-f]{12}\.([a-z0-9]+)-([0-9a-f]+)$/;

/** A mark a killed process left: its file name, and the blob ("algo:hex") it was about to name. */
export interface LeftMark {
  readonly file: string;
  readonly digest: string;
}

export class NamingMarks {
  readonly #dir: string;
  /** This process, as its marks name it: a PID and its start time name one process (pid-alive.ts). */
  readonly #self = `${process.pid}.${startTimeOf(process.pid) ?? '-'}`;

  constructor(dataDir: string) {
    this.#dir = join(dataDir, 'naming');
  }

  async open(): Promise<void> {
    await mkdirDurable(this.#dir);
  }

  /** Writes the mark that this process is about to name `digest`; resolves to its file name (for remove). */
  async mark(digest: Digest): Promise<string> {
    const file = `${this.#self}.${randomBytes(6).toString('hex')}.${digest.algo}-${digest.hex}`;
    try {
      await writeFile(join(this.#dir, file), '', { flag: 'wx' });
    } catch (err) {
      if (isNoRoom(err)) throw noRoomError(`the data directory's device for the mark of ${formatDigest(digest)}`, err);
      throw new FleetError('FC_ERR_INTERNAL', `cannot write the mark of ${formatDigest(digest)} in ${this.#dir}: ${errorMessage(err)}`, { cause: err });
    }
    return file;
  }

  /** Removes a mark (gone already is fine). */
  async remove(file: string): Promise<void> {
    await rm(join(this.#dir, file), { force: true });
  }

  /** The marks that processes killed between storing a blob and naming it left, as seen at `now`. */
  async leftovers(now: number): Promise<LeftMark[]> {
    let files: string[];
    try {
      files = await readdir(this.#dir);
    } catch (err) {
      if (isMissing(err)) return [];
      throw err;
    }
    const out: LeftMark[] = [];
    for (const file of files) {
      const [, pid, start, algo, hex] = MARK.exec(file) ?? [];
      // an operator's or an editor's file is no mark, and names no blob to delete
      if (pid === undefined || algo === undefined || hex === undefined || !isDigestAlgorithm(algo) || !isStoredHex(algo, hex)) continue;
      if (isLeftover(join(this.#dir, file), Number(pid), start === '-' ? undefined : start, now)) out.push({ file, digest: `${algo}:${hex}` });
    }
    return out;
  }
}
