// Local-disk blob store. Layout (versioned, sharded, restart-safe):
//   <root>/cas.v1/<algo>/<2 hex>/<hex>   committed objects
//   <root>/tmp/<random>                  uploads in progress (removed at open)
// A put streams into an O_EXCL temp file while hashing, verifies, fsyncs, then
// links into place: a crash at any moment leaves either nothing or a whole object.
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { link, mkdir, open, readdir, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FleetError, isNoRoom, noRoomError, NotFoundError } from '../errors.js';
import { isAbort, uploadAborted, type BlobStat, type BlobStore, type PutOptions, type PutResult, type ReadRange } from './blob-store.js';
import { DIGEST_ALGORITHMS, isStoredHex, type Digest } from './digest.js';
import { putMeter } from './put-meter.js';
import { fsyncFile, mkdirDurable } from './durable.js';
import { isMissing } from './missing.js';

const READ_CHUNK = 1024 * 1024;

export class DiskBlobStore implements BlobStore {
  readonly #casDir: string;
  readonly #tmpDir: string;

  constructor(root: string) {
    this.#casDir = join(root, 'cas.v1');
    this.#tmpDir = join(root, 'tmp');
  }

  async open(): Promise<void> {
    await rm(this.#tmpDir, { recursive: true, force: true });
    await mkdir(this.#tmpDir, { recursive: true });
    // Durable: a blob linked into a shard (put) is only as lasting as the directories above it.
    for (const algo of DIGEST_ALGORITHMS) await mkdirDurable(join(this.#casDir, algo));
  }

  pathOf(d: Digest): string {
    return join(this.#casDir, d.algo, d.hex.slice(0, 2), d.hex);
  }

  /** Whether the blob is stored; a file system error other than its absence is thrown (missing.ts). */
  async has(d: Digest): Promise<boolean> {
    try {
      await stat(this.pathOf(d));
      return true;
    } catch (err) {
      if (isMissing(err)) return false;
      throw err;
    }
  }

  async stat(d: Digest): Promise<BlobStat> {
    try {
      const st = await stat(this.pathOf(d));
      return { digest: d, size: st.size, mtimeMs: st.mtimeMs };
    } catch (err) {
      throw notFoundOr(err, d);
    }
  }

  async createReadStream(d: Digest, range?: ReadRange): Promise<Readable> {
    let handle;
    try {
      handle = await open(this.pathOf(d), 'r');
    } catch (err) {
      throw notFoundOr(err, d);
    }
    return handle.createReadStream({ start: range?.start, end: range?.end, highWaterMark: READ_CHUNK });
  }

  async put(body: Readable, options: PutOptions = {}): Promise<PutResult> {
    const tmp = join(this.#tmpDir, `${Date.now().toString(36)}-${randomBytes(8).toString('hex')}`);
    const { meter, verify } = putMeter(options);
    const out = createWriteStream(tmp, { flags: 'wx', mode: 0o644 });
    try {
      await pipeline(body, meter, out, options.signal ? { signal: options.signal } : {});
      const { digest, size } = verify();
      await fsyncFile(tmp);
      await options.beforeCommit?.(digest, size);
      const shard = dirname(this.pathOf(digest));
      await mkdirDurable(shard);
      // link, unlike rename, refuses a name that exists: of concurrent puts of one digest
      // exactly one creates the object (the others' If-None-Match: * is then a 412).
      const created = await link(tmp, this.pathOf(digest)).then(
        () => true,
        (err: NodeJS.ErrnoException) => {
          if (err.code === 'EEXIST') return false;
          throw err;
        },
      );
      await unlink(tmp);
      // Synced whether or not this put created the object: an equal put that is still
      // between its link and its sync may have made the entry, and the client of this one
      // is about to be told the blob is stored.
      await fsyncFile(shard);
      return { digest, size, created };
    } catch (err) {
      out.destroy();
      await rm(tmp, { force: true });
      if (err instanceof FleetError) throw err;
      if (isAbort(err)) throw uploadAborted(err);
      if (isNoRoom(err)) throw noRoomError('on the store device', err);
      throw err;
    }
  }

  async delete(d: Digest): Promise<boolean> {
    try {
      await unlink(this.pathOf(d));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  async *list(): AsyncIterable<BlobStat> {
    for (const algo of DIGEST_ALGORITHMS) {
      const algoDir = join(this.#casDir, algo);
      for (const shard of await readdirOrEmpty(algoDir)) {
        for (const hex of await readdirOrEmpty(join(algoDir, shard))) {
          // Only a blob's own name in its own shard: a file an operator or an editor left
          // there is no blob, and `verify --remove` or retention would delete it.
          if (!isStoredHex(algo, hex) || shard !== hex.slice(0, 2)) continue;
          try {
            const st = await stat(join(algoDir, shard, hex));
            yield { digest: { algo, hex }, size: st.size, mtimeMs: st.mtimeMs };
          } catch {
            // deleted while listing
          }
        }
      }
    }
  }
}

/**
 * A directory's entries; none when it does not exist (yet, or any more) or is a stray file
 * (an editor's or a file manager's). Other failures (EACCES, EIO) are thrown: a blob not
 * listed would go unchecked by `verify` and unpruned by retention.
 */
async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if (isMissing(err)) return [];
    throw err;
  }
}

function notFoundOr(err: unknown, d: Digest): Error {
  if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new NotFoundError(`no object ${d.algo}:${d.hex}`);
  return err as Error;
}
