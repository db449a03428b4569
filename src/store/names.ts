// Name records on top of the blob store: small JSON documents addressed by validated
// path segments (artifacts/<run>/<job>/<path>, projects/<p>/bases/<id>, ...).
// Each record is written to a temp file, synced and renamed, so a reader sees old or new,
// never half, and a record outlives a power loss as the blob it names does (disk.ts).
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { errorMessage, FleetError, isNoRoom, noRoomError, NotFoundError } from '../errors.js';
import { fsyncFile, mkdirDurable } from './durable.js';
import { isMissing } from './missing.js';
import { RECORD_SUFFIX as SUFFIX, segmentToFileName } from './safe-name.js';

/** Records being written, in the data directory's tmp/ (shared with the disk blob store's uploads). */
const TMP_PREFIX = 'rec-';

export interface NameRecord {
  /** "sha256:<hex>" of the blob the name points at. */
  readonly digest: string;
  readonly size: number;
  /** ms since the epoch. */
  readonly created: number;
  readonly contentType?: string;
  /** The uploader's Content-Disposition, served with the blob (a cache that kept the upload serves it too). */
  readonly contentDisposition?: string;
  /** A base's: the size of its plain tar its upload stated (X-Fleetcache-Plain-Size). */
  readonly plainSize?: number;
}

export class NameStore {
  readonly #root: string;
  readonly #tmpDir: string;
  /** Names with an `exclusive` call running: the end of the last one queued. */
  readonly #busy = new Map<string, Promise<void>>();

  constructor(root: string) {
    this.#root = join(root, 'names.v1');
    this.#tmpDir = join(root, 'tmp');
  }

  /** Makes the directories and removes the records a crash left half written (nothing else does with S3 storage). */
  async open(): Promise<void> {
    // Durable: a record renamed into it (put) is only as lasting as the directory itself.
    await mkdirDurable(this.#root);
    await mkdir(this.#tmpDir, { recursive: true });
    for (const entry of await readdir(this.#tmpDir)) {
      if (entry.startsWith(TMP_PREFIX)) await rm(join(this.#tmpDir, entry), { force: true });
    }
  }

  /** The directory of the records under `prefix`. */
  #dirOf(prefix: readonly string[]): string {
    return join(this.#root, ...prefix.map(segmentToFileName));
  }

  /** The file of a name's record, for a message about it. */
  fileOf(segments: readonly string[]): string {
    return this.#pathOf(segments);
  }

  #pathOf(segments: readonly string[]): string {
    const names = segments.map(segmentToFileName);
    names[names.length - 1] += SUFFIX;
    return join(this.#root, ...names);
  }

  async put<T extends object>(segments: readonly string[], record: T): Promise<void> {
    const target = this.#pathOf(segments);
    const tmp = join(this.#tmpDir, `${TMP_PREFIX}${randomBytes(8).toString('hex')}`);
    try {
      await writeFile(tmp, JSON.stringify(record), { flag: 'wx', flush: true });
      // A prune may remove a directory of the path once it looked empty (removeEmptyDirs),
      // between its making and the rename: made again. Once the record is in, it stays.
      for (let attempt = 1; ; attempt++) {
        try {
          await mkdirDurable(dirname(target));
          await rename(tmp, target);
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt === 5) throw err;
        }
      }
    } catch (err) {
      await rm(tmp, { force: true });
      if (isNoRoom(err)) throw noRoomError(`on the data directory's device for the record of ${segments.join('/')}`, err);
      throw err;
    }
    await fsyncFile(dirname(target));
  }

  /**
   * Removes the record (none is fine), durably: a prune deletes the blobs of the names it
   * deleted next, and a name a power loss brought back would point at a blob gone.
   */
  async delete(segments: readonly string[]): Promise<void> {
    const target = this.#pathOf(segments);
    try {
      await unlink(target);
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    // The directory itself may be gone already, a prune's removeEmptyDirs: nothing to sync.
    await fsyncFile(dirname(target)).catch((err: unknown) => {
      if (!isMissing(err)) throw err;
    });
  }

  /**
   * Removes the record if `stale` still says so of it as it is now, with no `exclusive`
   * write of the name in between (a PUT may have replaced it since it was read).
   */
  async deleteIf<T = NameRecord>(segments: readonly string[], stale: (current: T) => boolean): Promise<boolean> {
    return this.exclusive(segments, async () => {
      const current = await this.find<T>(segments).catch(() => undefined);
      if (current === undefined || !stale(current)) return false;
      await this.delete(segments);
      return true;
    });
  }

  /**
   * Every record under `prefix`, at any depth, as its decoded segments (none is read). A
   * directory that cannot be read (but is there) throws: its records must not be taken for none.
   */
  async *walk(prefix: readonly string[]): AsyncIterable<string[]> {
    let entries;
    try {
      entries = await readdir(this.#dirOf(prefix), { withFileTypes: true });
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    for (const e of entries) {
      if (e.isDirectory()) yield* this.walk([...prefix, decodeURIComponent(e.name)]);
      else if (e.name.endsWith(SUFFIX)) yield [...prefix, decodeURIComponent(e.name.slice(0, -SUFFIX.length))];
    }
  }

  /** Removes the directories under `prefix` (not itself) that hold no record any more. */
  async removeEmptyDirs(prefix: readonly string[]): Promise<void> {
    const dir = this.#dirOf(prefix);
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      await this.removeEmptyDirs([...prefix, decodeURIComponent(e.name)]);
      // fails (ENOTEMPTY) when it holds something, or a put has just made something in it
      await rmdir(join(dir, e.name)).catch(() => undefined);
    }
  }

  /**
   * Runs `fn` (a check of the current record, then a put) with no other `exclusive` call
   * for the same name in between; one origin process owns its data directory (dir-lock.ts).
   */
  async exclusive<R>(segments: readonly string[], fn: () => Promise<R>): Promise<R> {
    const key = this.#pathOf(segments);
    const before = this.#busy.get(key) ?? Promise.resolve();
    const run = before.then(fn);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.#busy.set(key, settled);
    void settled.then(() => {
      if (this.#busy.get(key) === settled) this.#busy.delete(key);
    });
    return run;
  }

  /** The record, or undefined when there is none. */
  async find<T = NameRecord>(segments: readonly string[]): Promise<T | undefined> {
    return this.get<T>(segments).catch((err: unknown) => {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    });
  }

  async get<T = NameRecord>(segments: readonly string[]): Promise<T> {
    const text = await this.text(segments);
    if (text === undefined) throw new NotFoundError(`no such name ${segments.join('/')}`);
    return parseRecord<T>(text, this.#pathOf(segments));
  }

  /** The record's text as stored, undefined when there is none: what a damaged one still says. */
  async text(segments: readonly string[]): Promise<string | undefined> {
    try {
      return await readFile(this.#pathOf(segments), 'utf8');
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
  }

  /**
   * Whether the name has a record (a damaged one too: it can be written over). Only a
   * missing file is "no": a directory that cannot be read (EACCES after a restore under
   * another owner, EIO) is an error, not an absence.
   */
  async exists(segments: readonly string[]): Promise<boolean> {
    return stat(this.#pathOf(segments)).then(() => true, (err: unknown) => {
      if (isMissing(err)) return false;
      throw err;
    });
  }

  async mtimeMs(segments: readonly string[]): Promise<number> {
    try {
      return (await stat(this.#pathOf(segments))).mtimeMs;
    } catch (err) {
      if (isMissing(err)) throw new NotFoundError(`no such name ${segments.join('/')}`);
      throw err;
    }
  }

  /**
   * The decoded last segments of the records directly under a prefix, none read. A prefix
   * with no directory has none; one that cannot be read is an error: the internal assets'
   * marks are listed so, and an empty list would serve them all without a token.
   */
  async keys(prefix: readonly string[]): Promise<string[]> {
    let entries: string[];
    try {
      entries = await readdir(this.#dirOf(prefix));
    } catch (err) {
      if (isMissing(err)) return [];
      throw err;
    }
    return entries.filter((e) => e.endsWith(SUFFIX)).map((e) => decodeURIComponent(e.slice(0, -SUFFIX.length)));
  }

  /**
   * Records directly under a prefix that `sound` takes for what they are, as [decoded last
   * segment, record]. A damaged record (not JSON, or of another shape: a digest edited by
   * hand) is left out and told to `damaged`, which logs it (a GET of its name answers 500):
   * one must not hide the others, e.g. every base of a project from the push that would write
   * a new one. A record that cannot be read (EIO, EACCES) fails the listing.
   */
  async list<T>(prefix: readonly string[], sound: (value: unknown) => value is T, damaged: (segments: string[], file: string, problem: string) => void): Promise<Array<[string, T]>> {
    const out: Array<[string, T]> = [];
    for (const key of await this.keys(prefix)) {
      const segments = [...prefix, key];
      const text = await this.text(segments);
      if (text === undefined) continue; // removed since the listing
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (err) {
        damaged(segments, this.#pathOf(segments), errorMessage(err));
        continue;
      }
      if (sound(value)) out.push([key, value]);
      else damaged(segments, this.#pathOf(segments), 'JSON of another shape');
    }
    return out;
  }
}

/** A record that is not JSON is damage on the server's side (a disk, a restore), never the client's. */
function parseRecord<T>(text: string, file: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw damagedRecord(file, err as Error);
  }
}

/**
 * The error of a record found damaged (`cause` says how): the server's, a 500. With its
 * cause: the client gets a reference to the log, not the server's path.
 */
export function damagedRecord(file: string, cause: Error): FleetError {
  return new FleetError('FC_ERR_INTERNAL', `damaged name record ${file}: ${errorMessage(cause)}`, { cause });
}
