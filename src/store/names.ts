// Name records on top of the blob store: small JSON documents addressed by validated
// path segments (artifacts/<run>/<job>/<path>, projects/<p>/bases/<id>, ...).
// Each record is written to a temp file and renamed, so a reader sees old or new, never half.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { NotFoundError } from '../errors.js';
import { RECORD_SUFFIX as SUFFIX, segmentToFileName } from './safe-name.js';

export interface NameRecord {
  /** "sha256:<hex>" of the blob the name points at. */
  readonly digest: string;
  readonly size: number;
  /** ms since the epoch. */
  readonly created: number;
  readonly contentType?: string;
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

  async open(): Promise<void> {
    await mkdir(this.#root, { recursive: true });
    await mkdir(this.#tmpDir, { recursive: true });
  }

  #pathOf(segments: readonly string[]): string {
    const names = segments.map(segmentToFileName);
    names[names.length - 1] += SUFFIX;
    return join(this.#root, ...names);
  }

  async put<T extends object>(segments: readonly string[], record: T): Promise<void> {
    const target = this.#pathOf(segments);
    await mkdir(dirname(target), { recursive: true });
    const tmp = join(this.#tmpDir, `rec-${randomBytes(8).toString('hex')}`);
    try {
      await writeFile(tmp, JSON.stringify(record), { flag: 'wx' });
      await rename(tmp, target);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  /** Removes the record (none is fine). */
  async delete(segments: readonly string[]): Promise<void> {
    await rm(this.#pathOf(segments), { force: true });
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
    try {
      return JSON.parse(await readFile(this.#pathOf(segments), 'utf8')) as T;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') {
        throw new NotFoundError(`no such name ${segments.join('/')}`);
      }
      throw err;
    }
  }

  async mtimeMs(segments: readonly string[]): Promise<number> {
    try {
      return (await stat(this.#pathOf(segments))).mtimeMs;
    } catch {
      throw new NotFoundError(`no such name ${segments.join('/')}`);
    }
  }

  /** Records directly under a prefix, as [decoded last segment, record]. */
  async list<T = NameRecord>(prefix: readonly string[]): Promise<Array<[string, T]>> {
    const dir = join(this.#root, ...prefix.map(segmentToFileName));
    let entries: string[];
    try {
      entries = await readdir(dir);
    } catch {
      return [];
    }
    const out: Array<[string, T]> = [];
    for (const entry of entries) {
      if (!entry.endsWith(SUFFIX)) continue;
      try {
        const rec = JSON.parse(await readFile(join(dir, entry), 'utf8')) as T;
        out.push([decodeURIComponent(entry.slice(0, -SUFFIX.length)), rec]);
      } catch {
        // removed between readdir and read
      }
    }
    return out;
  }
}
