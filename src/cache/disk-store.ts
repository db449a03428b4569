// The cache's disk: bodies plus JSON sidecars, indexed by an lru-cache bounded in the
// bytes their files take, in whole blocks (see DiskStore.footprint).
//
// Layout (versioned, sharded, restart-safe):
//   <data>/cas.v1/<algo>/<2 hex>/<hex>        immutable blobs, by digest (no sidecar:
//                                               their headers follow from the digest)
//   <data>/http.v1/<2 hex>/<sha256(key)>       names and mirror entries, by request key
//   <http file>.json                            sidecar: status, headers, policy
//   <shard>/.tmp-fill-<sha256(key)>             a fill in progress, its claim (see claimFill);
//                                               a /cas blob asked without credentials is
//                                               claimed under its own name, mode 000
//   <shard>/.tmp-<worker>-<n>-.tmp-fill-<…>     a worker's hard link to its claim (FillClaim.owner)
//   <data>/tmp/                                 sidecars being written, fills without a claim;
//                                               emptied at start
// Commit writes the sidecar first and renames the body last, so an http body on disk
// always has its sidecar; start-up drops orphans and size mismatches. A sidecar names the
// inode of its body: replacing an entry renames two files, and a crash between the two
// renames pairs the new sidecar (its ETag, its freshness) with the old body, which a
// lookup then takes for a miss instead of serving it as the new version: a single process
// drops it, a worker leaves it (to another worker, it is the same pair as a replacement
// between its renames, which removing would leave a body without its sidecar).
//
// Durability: bodies are fsynced before their rename, except small /cas blobs. Creating
// a file is the dominant cost of a cold small object, and a flush per 4 KiB object
// doubles it; a small blob cut short or zero-filled by a power loss is caught instead by
// hashing it on its first read after a restart (small bodies are read whole anyway).
import { createHash, randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { closeSync, constants as fsc, fchmodSync, fstatSync, fsyncSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statfsSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import type { Stats } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, statfs, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { LRUCache } from 'lru-cache';
import type { CachePolicyObject } from 'http-cache-semantics';
import type { FastifyBaseLogger as Logger } from 'fastify';
import type { SettingPlace } from '../config/load.js';
import { formatBytes } from '../config/units.js';
import { etagOf, IMMUTABLE_CACHE_CONTROL } from '../http/blob-reply.js';
import { mapLimit } from '../map-limit.js';
import { linkUnlessTaken } from '../store/link-unless-taken.js';
import { BodySlabs } from './body-slabs.js';
import { openIfInode } from '../open-if-inode.js';
import { formatDigest, isDigestAlgorithm, type Digest } from '../store/digest.js';
import { ConfigError, errorMessage } from '../errors.js';

export interface EntryMeta {
  /** The request key the entry answers (for humans and collision checks). */
  readonly key: string;
  readonly status: number;
  /** Response headers replayed to clients (content-type, etag, last-modified, cache-control…). */
  readonly headers: Record<string, string>;
  readonly size: number;
  /** When the body was received from upstream, ms since the epoch. */
  readonly storedAt: number;
  /** http-cache-semantics policy of mirror entries. */
  readonly policy?: CachePolicyObject;
}

interface Entry {
  readonly size: number;
  /** An http entry: the bytes of its sidecar, when known (a worker's probe does not read it). */
  readonly sidecar?: number | undefined;
  meta: EntryMeta | undefined;
  /** The body itself, for small objects (served without touching the disk). */
  body?: Buffer;
  /** What smallHit returns for a body held in memory, made on its first hit and kept. */
  hit?: SmallHit;
  /** A worker: the StorePeer epoch in which a hit of it was last reported. */
  reported?: number;
  /** When the body was written (a restart knows only the file's mtime). */
  storedAt?: number;
  /** A small /cas body indexed at start: not fsynced, so hashed before it is first served. */
  unverified?: boolean;
  /**
   * An http entry: the inode of the body `meta` describes, once known. Another worker may
   * replace the entry (a mirror object or a name fetched anew) before this one is told:
   * a body whose inode or size differs from what this process knows is not served with it.
   */
  ino?: number;
}

/**
 * A small /cas blob held in memory: the same object for every hit of one entry, so that
 * the server keeps what it prepares once (fast-hit.ts: the answer's headers) in `answer`.
 */
interface SmallHit {
  readonly body: Buffer;
  readonly meta: EntryMeta;
  answer?: string[];
  /** The same answer's status line and fields as written on a socket (early-hits.ts); null: node's to write. */
  head?: string | null;
}

export interface Hit {
  readonly id: string;
  readonly file: string;
  readonly meta: EntryMeta;
  /** Set for small bodies held in memory. */
  readonly body?: Buffer;
  /** Set when the bytes must be checked against this digest before they are served. */
  readonly verify?: Digest;
  /** The inode of the body `meta` describes, when known (see Entry.ino). */
  readonly ino?: number;
}

/** A storage failure (disk full, I/O error): the cache turns into a passthrough for a while. */
export class StorageError extends Error {}

/**
 * The right to fill one key, held as a file created exclusively: in a multi-process cache
 * the file system settles which worker fills (no message on the miss path). `fd` is open
 * for writing until the holder writes the body or gives it up.
 *
 * A /cas blob asked without credentials, the common case, is claimed under its own name
 * (`inPlace`), created with no permission bits: a mode no complete body has, which every
 * reader of the directory (probes, the index rebuild) takes for "not there". A small body
 * is written through the claim's descriptor and made complete with fchmod, with no
 * rename: renaming a temp file into place cost a cold 4 KiB miss about 10 µs of CPU, and
 * 10-15 % of the objects per second with two workers. A large body goes to a temp file
 * renamed over the claim at commit. Other keys (credentials, variants, names that are
 * replaced in place) are claimed by a temp file beside the entry, renamed into place.
 */
export interface FillClaim {
  readonly path: string;
  readonly inPlace: boolean;
  fd: number | undefined;
  /** The claim file's inode, taken when its descriptor is closed before the fill ends (openClaim). */
  ino?: number;
  /**
   * A worker's claim beside the entry: a hard link to it under this process's temp prefix,
   * removed when the fill ends. A claim's name says nothing of its holder, and the body a
   * fill writes to it would stay on disk, counted by no index, when its worker dies: the
   * primary removes it through this link (see adoptUnreported).
   */
  readonly owner?: string;
}

/** The mode of a claim under the blob's own name; a complete body always has some permission bit. */
const CLAIMED_MODE = 0o000;
const BODY_MODE = 0o644;

function isComplete(st: Stats): boolean {
  return st.isFile() && (st.mode & 0o777) !== 0;
}

/** Whether `st`, a complete body, is another one than the `size` bytes of inode `ino` (if known) an entry describes. */
function isReplaced(st: Stats, size: number, ino: number | undefined): boolean {
  return st.size !== size || (ino !== undefined && st.ino !== ino);
}

const SIDECAR = '.json';
/** A sidecar file: the entry's meta and the inode of the body it describes (absent in older sidecars). */
type SidecarFile = EntryMeta & { readonly ino?: number };

function sidecarText(meta: EntryMeta, ino: number): string {
  return JSON.stringify({ ...meta, ino } satisfies SidecarFile);
}

/**
 * What the name `n` in a shard directory (`names`: all of them) is: a body, the sidecar of
 * a body beside it, or something no entry owns: a temp file or claim (a fill's, or a
 * crash's), a sidecar without its body (or beside a /cas body: they have none), an http body
 * without its sidecar. A /cas body can still be a claim, which only a stat tells (isComplete).
 */
function shardEntry(n: string, cas: boolean, names: ReadonlySet<string>): 'body' | 'sidecar' | 'other' {
  if (n.startsWith(TEMP_PREFIX)) return 'other';
  if (n.endsWith(SIDECAR)) return !cas && names.has(n.slice(0, -SIDECAR.length)) ? 'sidecar' : 'other';
  return cas || names.has(n + SIDECAR) ? 'body' : 'other';
}
/** Small bodies being committed and fills in progress (claims), in their shard directory. */
const TEMP_PREFIX = '.tmp-';
const CLAIM_PREFIX = `${TEMP_PREFIX}fill-`;
/** Bodies up to this size are also kept in memory, within SMALL_BUDGET bytes of slabs in all (body-slabs.ts). */
export const SMALL_MAX = 16 * 1024;
const SMALL_BUDGET = 64 * 1024 * 1024;
const STATFS_MAX_AGE_MS = 1000;
/** The block size charged when the filesystem's cannot be read (statfs). */
const DEFAULT_BLOCK = 4096;
/**
 * Reservations of this size or more read the free space at once (statfsSync: a few µs, no
 * thread pool): against the last figure, up to a second old, they would miss what other
 * workers wrote meanwhile, and a disk holding the whole budget would fail mid-fill (ENOSPC)
 * instead of making room first.
 */
const FRESH_FIGURE_MIN = 1024 * 1024;
const FULL_COOLDOWN_MS = 30_000;
/** Room kept free on the data filesystem beyond the object being filled. */
const FREE_MARGIN = 1024 * 1024;
/** No room reserved. */
export const NONE_RESERVED: Reserved = Object.freeze({ bytes: 0, unwritten: 0 });

export function sameReserved(a: Reserved, b: Reserved): boolean {
  return a.bytes === b.bytes && a.unwritten === b.unwritten;
}
/** Temp names: a random prefix per process (workers share the directories) and a counter. */
let tempOrigin = randomBytes(6).toString('hex');
let tempSeq = 0;

function tempName(): string {
  return `${tempOrigin}-${(++tempSeq).toString(36)}`;
}

/** A worker's prefix, chosen by its primary, which removes what is left of its temp files when it dies. */
export function useTempOrigin(origin: string): void {
  tempOrigin = origin;
}

export function casId(d: Digest): string {
  return `cas.v1/${d.algo}/${d.hex.slice(0, 2)}/${d.hex}`;
}

/**
 * Whether `id` is a /cas blob's: no sidecar (its headers follow from the digest), and
 * content-addressed, so never replaced by other bytes (an http entry may be).
 */
export function isCasId(id: string): boolean {
  return id.startsWith('cas.');
}

/** The digest a /cas id names, or undefined for http entries. */
function casDigest(id: string): Digest | undefined {
  const m = /^cas\.v1\/([a-z0-9]+)\/[0-9a-f]{2}\/([0-9a-f]+)$/.exec(id);
  return m && isDigestAlgorithm(m[1]!) ? { algo: m[1], hex: m[2]! } : undefined;
}

/**
 * What every copy of an immutable blob is answered with, whoever stored it: the origin's
 * headers (replyWithBlob, routes/cas.ts) but its Last-Modified, which no copy keeps.
 */
export function casHeaders(d: Digest): Record<string, string> {
  // Only what upstream marked shareable is kept, so a kept blob is public: said as the
  // origin says it, for `assets upload` through a cache (src/assets/upload.ts).
  return {
    'content-type': 'application/octet-stream', etag: etagOf(d), 'cache-control': IMMUTABLE_CACHE_CONTROL,
    'x-fleetcache-digest': formatDigest(d), 'x-fleetcache-visibility': 'public', 'x-content-type-options': 'nosniff',
  };
}

function casMeta(d: Digest, size: number, storedAt: number): EntryMeta {
  return { key: `/cas/${d.algo}/${d.hex}`, status: 200, headers: casHeaders(d), size, storedAt };
}

/** Small /cas bodies skip the fsync (see the header comment). */
function needsSync(id: string, size: number): boolean {
  return size > SMALL_MAX || !isCasId(id);
}

export function httpId(key: string): string {
  const h = createHash('sha256').update(key).digest('hex');
  return `http.v1/${h.slice(0, 2)}/${h}`;
}

/**
 * A worker of a multi-process cache (cluster/link.ts): the primary owns the index in
 * bytes and unlinks what it evicts; this process only tells it what it did.
 */
interface StorePeer {
  /** `sidecar`: the bytes of an http entry's sidecar. */
  committed(id: string, size: number, storedAt: number, sidecar: number | undefined): void;
  /** Reported at most once per `epoch` for each id (the store checks). */
  touched(id: string): void;
  /** Changes each time the reports are sent: a hit is reported once per batch, however many there were. */
  readonly epoch: number;
  deleted(id: string): void;
  /** The primary's figures for the whole store. */
  readonly store: { readonly bytes: number; readonly objects: number; readonly evicted: Evicted };
  /** Asks the primary to evict (see DiskStore.makeRoom); resolves with the bytes it freed. */
  makeRoom(bytes: number, whole: boolean): Promise<number>;
  /** This process opened the first reader of the body of `id` (`size` bytes), or closed its last (`size` undefined). */
  reading(id: string, size: number | undefined): void;
  /** The bytes of the bodies being read in every worker, as the primary's last answer to makeRoom said. */
  readonly readBytes: number;
  /** The room this worker's reservations in progress hold changed (see DiskStore.reserve). */
  reservations(held: Reserved): void;
  /** The room the other workers' reservations in progress hold, as the primary last said. */
  readonly othersReserved: Reserved;
}

/** The room reservations in progress hold (see DiskStore.reserve): in all, and the part not written yet. */
export interface Reserved {
  readonly bytes: number;
  readonly unwritten: number;
}

/**
 * Room taken on the disk for a body about to be written (DiskStore.reserve): told each write
 * (`written`), and its end (`end`: written, or never to be), which gives the room back to
 * the free-space figure's reckoning (the disk's own figure then counts what was written).
 */
export interface Reservation {
  readonly size: number;
  written(bytes: number): void;
  end(): void;
}

/**
 * What the cache was doing with its disk when the disk failed: named in the log line of a
 * storage failure (`during`), for whoever reads it to tell a fill's write from a commit's.
 */
type DiskTask = 'claim' | 'temp-file' | 'free-space' | 'reservation' | 'fill-write' | 'upload-copy' | 'commit';

/** What the index evicted since start (the least recently used, over the budget or to make room). */
export interface Evicted {
  readonly objects: number;
  readonly bytes: number;
}

/**
 * What `commit` did with a body: `stored`; `larger-than-cache`, dropped (the cache could
 * never hold it); `left-to-its-fill`, dropped because a fill holds the blob's name and
 * stores the same bytes itself.
 */
type CommitOutcome = 'stored' | 'larger-than-cache' | 'left-to-its-fill';

interface DiskStoreOptions {
  /** Set in a worker: the index here is a local view, the primary's is the real one. */
  readonly peer?: StorePeer;
  /** Set in the primary: told of every eviction (workers drop their copies). */
  readonly onEvicted?: (id: string) => void;
  /** Where maxSize was set, named by open's refusal of a budget too small; default "maxSize". */
  readonly maxSizeSetting?: SettingPlace | undefined;
  /** How old a free-space figure may get (STATFS_MAX_AGE_MS): tests lower it. */
  readonly statfsMaxAgeMs?: number;
}

export class DiskStore {
  readonly dir: string;
  readonly maxSize: number;
  #log: Logger;
  #lru: LRUCache<string, Entry>;
  /** The data filesystem's block: the unit of what an entry costs (see footprint), read at open. */
  #block = DEFAULT_BLOCK;
  #peer: StorePeer | undefined;
  #maxSizeSetting: SettingPlace | undefined;
  /** Set while dropping an entry the primary evicted (nothing to unlink or report). */
  #forgetting = false;
  #fullUntil = 0;
  /** Storage failures since start (each began a cool-down; see storageFailure). */
  #failures = 0;
  /** Small bodies held in memory (`Entry.body`). */
  readonly #heldBodies = new BodySlabs(SMALL_BUDGET);
  /** Shard directories known to exist (saves a mkdir per commit). */
  #dirs = new Set<string>();
  #free = { bytes: 0, at: 0 };
  readonly #statfsMaxAgeMs: number;
  /**
   * Bytes this process's fills reserved and have not written yet (see settle): a statfs
   * figure does not count them, so each is taken off it. Without this, a fresh figure read
   * for a large reservation forgot the fills reserved a moment before, and two at once on
   * a disk holding the budget both started, to fail mid-way (ENOSPC) instead of making room.
   * A worker tells the primary, which tells the others (StorePeer.othersReserved): their
   * free-space figures count it too.
   */
  #unwritten = 0;
  /** The bytes of the reservations in progress in this process, written or not (see isHeldByCache). */
  #reserved = 0;
  #freeRefresh: Promise<void> | undefined;
  /** The reservations making room, one after another (see #makeRoomFor). */
  #roomTurns: Promise<void> = Promise.resolve();
  /** Evictions since start (this process's index: the primary's, or a single process's). */
  #evicted = { objects: 0, bytes: 0 };
  /** Sidecar updates in flight, by id: the last one asked for each, which the next one waits for (see updateMeta). */
  #metaUpdates = new Map<string, Promise<void>>();
  /**
   * Commits of http entries in flight in this process, by id, and how many: from the rename
   * of their sidecar until their indexing. Meanwhile the sidecar in place may name a body
   * not renamed yet: no damage for a lookup to drop (see lookup).
   */
  #committing = new Map<string, number>();
  /** Primary: evicted entries whose files are being unlinked in the background, and when that is done. */
  #unlinking = new Map<string, Promise<void>>();
  /**
   * Large bodies open for reading in this process, by id: how many readers and their size.
   * A file unlinked while open keeps its room until its last reader closes it (a slow
   * client can hold it for minutes): evicting it makes no room now (see makeRoom). In the
   * primary, the readers are the workers that read the body (see readerOpened).
   */
  #reading = new Map<string, { readers: number; size: number }>();

  constructor(dir: string, maxSize: number, log: Logger, options: DiskStoreOptions = {}) {
    this.dir = dir;
    this.maxSize = maxSize;
    this.#log = log;
    this.#peer = options.peer;
    this.#maxSizeSetting = options.maxSizeSetting;
    this.#statfsMaxAgeMs = options.statfsMaxAgeMs ?? STATFS_MAX_AGE_MS;
    const onEvicted = options.onEvicted;
    this.#lru = new LRUCache<string, Entry>({
      maxSize,
      sizeCalculation: (e, id) => this.footprint(id, e.size, e.sidecar),
      dispose: (e, id, reason) => {
        if (e.body) this.#heldBodies.release(e.body);
        // 'set' replaced the entry in place (same file names, already renamed over).
        if (reason !== 'evict' && reason !== 'delete') return;
        if (this.#forgetting) {
          // Gone from the disk by another process's hand (see forget): the primary tells the other workers.
          if (!this.#peer) onEvicted?.(id);
          return;
        }
        if (reason === 'delete') {
          // An entry deleted on purpose (damaged on disk, gone upstream) leaves the disk before
          // its caller goes on, in a worker too: the caller fetches it again at once, and a
          // claim under the blob's own name needs the name free. (Unlinked later by the
          // primary, a copy fetched meanwhile would go.)
          for (const file of this.#entryFiles(id)) {
            try {
              unlinkSync(file);
            } catch {
              // gone already (or the disk refuses: as for an eviction, nothing more to do)
            }
          }
        } else if (!this.#peer) {
          this.#evicted.objects++;
          this.#evicted.bytes += this.footprint(id, e.size, e.sidecar);
          // Evictions unlink in the background. A worker's own 'evict' only forgets: the
          // primary decides what leaves the disk.
          this.#unlinking.set(id, (async () => {
            for (const file of this.#entryFiles(id)) await unlink(file).catch(() => undefined);
          })().finally(() => this.#unlinking.delete(id)));
        }
        if (!this.#peer) onEvicted?.(id);
        else if (reason === 'delete') this.#peer.deleted(id);
      },
    });
  }

  /** Replaces the logger given at construction (tests capture the store's warnings with it). @public used by tests through app.cache.store, which knip does not follow. */
  useLogger(log: Logger): void {
    this.#log = log;
  }

  get bytes(): number {
    return this.#peer ? this.#peer.store.bytes : this.#lru.calculatedSize;
  }

  get count(): number {
    return this.#peer ? this.#peer.store.objects : this.#lru.size;
  }

  get evicted(): Evicted {
    return this.#peer ? this.#peer.store.evicted : this.#evicted;
  }

  /** Primary: a worker committed `id` (`sidecar`: its sidecar's bytes, when known). */
  adopt(id: string, size: number, storedAt: number, sidecar?: number): void {
    this.#lru.set(id, { size, sidecar, meta: undefined, storedAt });
  }

  /**
   * Primary: indexes the complete bodies on disk that the index lacks, and returns how many:
   * those a worker that died had committed but not reported yet (it reports in batches),
   * which would otherwise stay on disk, neither counted nor evicted, until the next start.
   * Asynchronous, unlike open(): the primary hands out connections meanwhile. Bodies being
   * unlinked after an eviction are skipped. `deadOrigin`: the dead worker's temp-name prefix;
   * its temp files are removed in the same walk of the shards.
   */
  async adoptUnreported(deadOrigin: string): Promise<number> {
    const names = async (rel: string): Promise<string[]> => readdir(path.join(this.dir, rel)).catch(() => []);
    // a dead worker's temp files (see useTempOrigin), in tmp/ and beside their final names
    const isDeadTemp = (n: string): boolean => n.startsWith(`${deadOrigin}-`) || n.startsWith(`${TEMP_PREFIX}${deadOrigin}-`);
    for (const n of await names('tmp')) if (isDeadTemp(n)) await rm(path.join(this.dir, 'tmp', n), { force: true });
    /** A dead worker's temp file in a shard; one linked to a claim (FillClaim.owner) takes the claim with it, if still the same file. */
    const removeDeadTemp = async (shard: string, n: string): Promise<void> => {
      const file = path.join(this.dir, shard, n);
      const at = n.indexOf(CLAIM_PREFIX, TEMP_PREFIX.length);
      if (at >= 0) {
        const claim = path.join(this.dir, shard, n.slice(at));
        // The link keeps the inode in use: a claim with the same one is that fill's, not a new one.
        const [link, claimed] = await Promise.all([stat(file).catch(() => undefined), stat(claim).catch(() => undefined)]);
        if (link && claimed && link.ino === claimed.ino) await rm(claim, { force: true });
      }
      await rm(file, { force: true });
    };
    const shards: string[] = [];
    for (const algo of await names('cas.v1')) for (const s of await names(`cas.v1/${algo}`)) shards.push(`cas.v1/${algo}/${s}`);
    for (const s of await names('http.v1')) shards.push(`http.v1/${s}`);
    let adopted = 0;
    await mapLimit(shards, 4, async (shard) => {
      const listed = await names(shard);
      const set = new Set(listed);
      for (const n of listed) {
        const id = `${shard}/${n}`;
        if (isDeadTemp(n)) await removeDeadTemp(shard, n);
        if (shardEntry(n, isCasId(shard), set) !== 'body' || this.#lru.has(id) || this.#unlinking.has(id)) continue;
        const st = await stat(path.join(this.dir, id)).catch(() => undefined);
        const sidecar = isCasId(id) ? undefined : (await stat(path.join(this.dir, id + SIDECAR)).catch(() => undefined))?.size;
        if (!st || !isComplete(st) || this.#lru.has(id) || this.#unlinking.has(id)) continue;
        this.adopt(id, st.size, st.mtimeMs, sidecar);
        adopted++;
      }
    });
    return adopted;
  }

  /** Primary: a worker served `id` (recency only). */
  touch(id: string): void {
    this.#lru.get(id);
  }

  /**
   * Claims the fill of `key` (an entry of `id`): its temp file, created exclusively.
   * Undefined when the file exists: another fill of the key is in flight (in another
   * worker; this process's own are found in its Fills first), or a crashed one left it
   * (see dropOrphanClaim). Throws StorageError when the disk refuses.
   */
  claimFill(id: string, key: string): FillClaim | undefined {
    if (this.isFull()) throw new StorageError('cache disk is full (cooling down)');
    const { path: p, inPlace } = this.#claimOf(id, key);
    let fd: number;
    try {
      this.#ensureShard(path.dirname(p));
      fd = openSync(p, fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY, inPlace ? CLAIMED_MODE : BODY_MODE);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
      throw this.storageFailure(err, 'claim');
    }
    // (A claim under the blob's own name holds no body: a large one is written to tmp/.)
    if (!this.#peer || inPlace) return { path: p, inPlace, fd };
    const owner = path.join(path.dirname(p), `${TEMP_PREFIX}${tempName()}-${path.basename(p)}`);
    try {
      linkSync(p, owner);
    } catch (err) {
      closeSync(fd);
      rmSync(p, { force: true });
      throw this.storageFailure(err, 'claim');
    }
    return { path: p, inPlace, fd, owner };
  }

  /**
   * Removes the claim file of `key` when it was last written before `before` (ms since the
   * epoch), as the file of a filler that is gone: every live worker was asked since and
   * none fills the key. Returns whether it did.
   */
  dropOrphanClaim(id: string, key: string, before: number): boolean {
    const claim = this.#claimStat(id, key);
    if (!claim || claim.st.mtimeMs >= before) return false;
    this.#log.warn({ id }, 'removing the claim of a fill whose worker is gone');
    rmSync(claim.path, { force: true });
    return true;
  }

  /**
   * Gives a claim up: closes its file and removes it. Called once: after that, the name
   * may already be another fill's claim.
   */
  dropClaim(claim: FillClaim): void {
    // Never throws (it runs in a fill's cleanup): a disk failing here is a storage failure,
    // and a claim left behind is an incomplete file, never served, removed at the next start.
    try {
      let ino = claim.ino;
      if (claim.fd !== undefined) {
        try {
          ino = fstatSync(claim.fd).ino;
        } finally {
          closeSync(claim.fd);
          claim.fd = undefined;
        }
      }
      // Only the claim itself: a body another process committed under the name meanwhile stays
      // (under the blob's own name, a complete file is never a claim, even on a reused inode).
      const st = statSync(claim.path, { throwIfNoEntry: false });
      if (st && (ino === undefined || st.ino === ino) && !(claim.inPlace && isComplete(st))) rmSync(claim.path, { force: true });
    } catch (err) {
      this.storageFailure(err, 'claim');
    }
  }

  /** Whether `file` is a fill's claim: there, and not complete (see FillClaim). */
  #isClaim(file: string): boolean {
    const st = statSync(file, { throwIfNoEntry: false });
    return st !== undefined && !isComplete(st);
  }

  /**
   * Whether a fill of `key` (an entry of `id`) holds its claim now: the claim file is there,
   * and under the blob's own name not yet complete. A blocking stat, as storedElsewhere.
   */
  isClaimed(id: string, key: string): boolean {
    return this.#claimStat(id, key) !== undefined;
  }

  /**
   * The claim file of `key` (an entry of `id`) and its stat while a fill holds it (a blocking
   * stat); undefined when there is none: no file, or under the blob's own name a complete
   * body, which is the entry itself, never a claim.
   */
  #claimStat(id: string, key: string): { path: string; st: Stats } | undefined {
    const { path: p, inPlace } = this.#claimOf(id, key);
    const st = statSync(p, { throwIfNoEntry: false });
    return st && !(inPlace && isComplete(st)) ? { path: p, st } : undefined;
  }

  /** Worker: whether another process stored `id` (a single process knows from its index). */
  storedElsewhere(id: string): boolean {
    if (!this.#peer) return false;
    const st = statSync(path.join(this.dir, id), { throwIfNoEntry: false });
    return st !== undefined && isComplete(st);
  }

  /**
   * Whether the claim of `key` is the blob's own name (a /cas blob asked without
   * credentials): taking it then fails when another process stored the blob, so the
   * claim needs no `storedElsewhere` look first.
   */
  claimsInPlace(id: string, key: string): boolean {
    return isCasId(id) && key === `${id}\0\0`;
  }

  /** One claim per key (fills with other credentials or variants have their own); see FillClaim. */
  #claimOf(id: string, key: string): { path: string; inPlace: boolean } {
    if (this.claimsInPlace(id, key)) return { path: path.join(this.dir, id), inPlace: true };
    return { path: path.join(this.dir, path.dirname(id), CLAIM_PREFIX + createHash('sha256').update(key).digest('hex')), inPlace: false };
  }

  /** Creates a shard directory on first use (known ones are remembered). */
  #ensureShard(shard: string): void {
    if (this.#dirs.has(shard)) return;
    mkdirSync(shard, { recursive: true });
    this.#dirs.add(shard);
  }

  /**
   * Drops `id` from the index without touching the disk, where another process removed it:
   * in a worker, the primary that evicted it; in the primary, the worker that deleted it.
   */
  forget(id: string): void {
    this.#forgetting = true;
    try {
      this.#lru.delete(id);
    } finally {
      this.#forgetting = false;
    }
  }

  /**
   * Creates directories, removes leftover temp files and rebuilds the index from disk,
   * oldest access first. Synchronous stats on purpose: this runs once before serving, and
   * a tight readdirSync/statSync loop indexes 100,000 objects far faster than the thread pool.
   */
  async open(): Promise<void> {
    // A worker finds objects as it is asked for them (see lookup); the primary rebuilt the index.
    if (this.#peer) {
      await mkdir(path.join(this.dir, 'tmp'), { recursive: true });
      return void this.#readBlock();
    }
    await rm(path.join(this.dir, 'tmp'), { recursive: true, force: true });
    await mkdir(path.join(this.dir, 'tmp'), { recursive: true });
    this.#readBlock(); // before anything is indexed: each entry is charged in its blocks once, when set
    this.#checkMaxSize();
    const list = (rel: string): string[] => {
      try {
        return readdirSync(path.join(this.dir, rel));
      } catch {
        return [];
      }
    };
    const shards: string[] = [];
    for (const algo of list('cas.v1')) for (const s of list(`cas.v1/${algo}`)) shards.push(`cas.v1/${algo}/${s}`);
    for (const s of list('http.v1')) shards.push(`http.v1/${s}`);
    const found: { id: string; size: number; sidecar: number | undefined; atimeMs: number; mtimeMs: number }[] = [];
    const orphans: string[] = [];
    for (const shard of shards) {
      const names = list(shard);
      const set = new Set(names);
      const cas = isCasId(shard);
      for (const n of names) {
        const id = `${shard}/${n}`;
        const kind = shardEntry(n, cas, set);
        if (kind === 'other') {
          orphans.push(id);
        } else if (kind === 'body') {
          const st = statSync(path.join(this.dir, id), { throwIfNoEntry: false });
          // A blob claimed under its own name and never completed (a crash mid-fill).
          if (st && cas && !isComplete(st)) orphans.push(id);
          else if (st) found.push({ id, size: st.size, sidecar: cas ? undefined : this.#sidecarBytes(id), atimeMs: st.atimeMs, mtimeMs: st.mtimeMs });
        }
      }
    }
    // What the cache cannot remove (a directory no layout of its own makes, a file another
    // user owns) is left and said: it must not keep the cache from starting.
    const left: string[] = [];
    await mapLimit(orphans, 16, (id) => rm(path.join(this.dir, id), { force: true }).catch(() => void left.push(id)));
    if (left.length > 0) this.#log.warn({ count: left.length, first: left.slice(0, 5) }, 'cannot remove what the data directory holds beside the cache\'s objects: left as it is');
    found.sort((a, b) => a.atimeMs - b.atimeMs);
    for (const f of found) {
      this.#lru.set(f.id, { size: f.size, sidecar: f.sidecar, meta: undefined, storedAt: f.mtimeMs, ...(needsSync(f.id, f.size) ? {} : { unverified: true }) });
    }
    // More on disk than the size limit (lowered since, or mistyped): the oldest went, said
    // loudly, since a wrong limit would quietly empty the cache.
    if (this.#lru.size < found.length) {
      const bytes = found.reduce((n, f) => n + this.footprint(f.id, f.size, f.sidecar), 0) - this.#lru.calculatedSize;
      this.#log.warn(
        { evicted: found.length - this.#lru.size, evictedBytes: bytes, kept: this.#lru.size, maxSize: this.maxSize },
        `the data directory held more than the size limit (${formatBytes(this.maxSize)}): the ${found.length - this.#lru.size} least recently used objects were evicted at start`,
      );
    }
    await this.#checkRoom();
  }

  /**
   * Warns when the size limit is more than the data directory's filesystem can hold (what
   * the index holds plus the free space): the disk would fill before the LRU evicts, and
   * each write failure then turns the cache into a passthrough for 30 s (storageFailure).
   */
  async #checkRoom(): Promise<void> {
    try {
      await this.#refreshFree();
    } catch {
      return; // no figure: the first reserve() tries again, and fails loudly if it must
    }
    const room = this.bytes + this.#free.bytes;
    if (this.maxSize <= room) return;
    this.#log.warn(
      { dir: this.dir, maxSize: this.maxSize, room },
      `the cache's size limit (${formatBytes(this.maxSize)}) is more than its data directory can hold (${formatBytes(room)}, free space included): the disk will fill before the oldest objects are evicted; lower --max-size`,
    );
  }

  /**
   * The committed entry (with its sidecar read), marking it most recently used; undefined
   * on a miss. A worker also looks on disk for entries other workers stored, unless told
   * not to (`probe: false`: the caller looks itself, see storedElsewhere).
   */
  async lookup(id: string, probe = true): Promise<Hit | undefined> {
    const entry = this.#lru.get(id) ?? (this.#peer && probe ? this.#probe(id) : undefined);
    if (!entry) return undefined;
    const file = path.join(this.dir, id);
    // The digest is parsed only for a first lookup or a check, not on every hit.
    const digest = (!entry.meta || entry.unverified) && isCasId(id) ? casDigest(id) : undefined;
    if (!entry.meta && digest) entry.meta = casMeta(digest, entry.size, entry.storedAt ?? Date.now());
    if (!entry.meta) {
      try {
        const { ino, ...meta } = JSON.parse(await readFile(file + SIDECAR, 'utf8')) as SidecarFile;
        const body = await stat(file);
        // The inode first: a replacement's sidecar beside the old body names another size as often as not.
        if (ino !== undefined && ino !== body.ino) {
          // In a worker, another worker's replacement may be between its two renames (see
          // commit): a miss here, its files left to it (the primary's index still counts
          // them; a crash's pair goes with the next commit of the key, or an eviction).
          if (this.#peer) return void this.forget(id);
          throw new Error('the sidecar describes another body (a crash between the renames of a replacement)');
        }
        // In a worker, another worker's replacement may have landed whole since the probe took
        // the old body's size (before the primary tells of it): a miss, its files left to it.
        if (this.#peer && meta.size === body.size && body.size !== entry.size) return void this.forget(id);
        if (meta.size !== entry.size) throw new Error(`sidecar says ${meta.size} bytes, body has ${entry.size}`);
        entry.meta = meta;
        if (ino !== undefined) entry.ino = ino;
      } catch (err) {
        // Gone from the disk by another process's hand (the primary evicted it): forgotten,
        // nothing unlinked (another worker may have stored it anew meanwhile).
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return void this.forget(id);
        // A commit of this process replacing the entry, between its renames or indexed since
        // (a PUT kept while a GET read the headers): a miss, its files and its entry left to it.
        if (this.#committing.has(id) || this.#lru.peek(id) !== entry) return undefined;
        this.#log.warn({ id, err: errorMessage(err) }, 'dropping unreadable cache entry');
        this.#lru.delete(id);
        return undefined;
      }
    }
    // Only now: a lookup that turned into a miss above must not make the entry the primary's most recently used.
    this.#reportHit(id, entry);
    return {
      id,
      file,
      meta: entry.meta,
      ...(entry.body ? { body: entry.body } : {}),
      ...(entry.unverified && digest ? { verify: digest } : {}),
      ...(entry.ino !== undefined ? { ino: entry.ino } : {}),
    };
  }

  /**
   * Worker: an object another worker committed (or one from before the start) is found
   * on disk under its id. Small /cas bodies found this way are hashed before first use.
   * A blocking stat, as storedElsewhere: one syscall, cheaper than a trip through the thread pool.
   */
  #probe(id: string): Entry | undefined {
    const st = statSync(path.join(this.dir, id), { throwIfNoEntry: false });
    if (!st || !isComplete(st)) return undefined; // absent, or claimed and being written
    const entry: Entry = { size: st.size, meta: undefined, storedAt: st.mtimeMs, ...(needsSync(id, st.size) ? {} : { unverified: true }) };
    this.#lru.set(id, entry);
    return entry;
  }

  /**
   * A small committed /cas blob, marking it most recently used: from memory, or read from
   * disk (and hashed first when unverified) and kept in memory for the next hits.
   * Undefined for anything else (large, absent, damaged, claimed), which takes `lookup`'s
   * path. `probe`: a worker also looks on disk for blobs other workers stored.
   */
  smallHit(id: string, probe: boolean): SmallHit | undefined {
    const entry = this.#lru.get(id) ?? (probe && this.#peer ? this.#probe(id) : undefined);
    if (!entry) return undefined;
    let hit = entry.hit;
    if (!hit) {
      if (entry.size > SMALL_MAX || !isCasId(id)) return undefined;
      const digest = casDigest(id);
      if (!digest) return undefined;
      const body = (entry.unverified ? undefined : entry.body) ?? this.#readSmall(id, path.join(this.dir, id), entry.size, entry.unverified ? digest : undefined);
      if (!body) return undefined;
      entry.meta ??= casMeta(digest, entry.size, entry.storedAt ?? Date.now());
      hit = { body, meta: entry.meta };
      if (entry.body === body) entry.hit = hit; // held in memory (within the budget): kept with it
    }
    this.#reportHit(id, entry);
    return hit;
  }

  /** A worker tells the primary of a hit (its LRU order), once per batch of reports. */
  #reportHit(id: string, entry: Entry): void {
    const peer = this.#peer;
    if (!peer || entry.reported === peer.epoch) return;
    entry.reported = peer.epoch;
    peer.touched(id);
  }

  /**
   * Opens the committed body of `hit` for reading; undefined when it is gone (evicted
   * meanwhile), when the name is a claim being written (evicted, then claimed again by
   * another fill), or when another worker's body replaced it.
   */
  async openBody(hit: Hit): Promise<FileHandle | undefined> {
    const fh = await open(hit.file, 'r').catch(() => undefined);
    if (!fh) return undefined;
    const st = await fh.stat();
    if (isComplete(st) && !isReplaced(st, hit.meta.size, hit.ino)) return this.#countReader(hit.id, st.size, fh);
    await fh.close();
    if (isComplete(st)) this.#replaced(hit.id);
    return undefined;
  }

  /**
   * Counts `fh`, a reader of the body of `id`, until it is closed (see #reading). A worker
   * tells the primary of its first reader of a body and of its last only: no message per hit.
   */
  #countReader(id: string, size: number, fh: FileHandle): FileHandle {
    if (this.readerOpened(id, size)) this.#peer?.reading(id, size);
    // A FileHandle is an EventEmitter, told of its close by whoever closes it (node's types omit it).
    (fh as FileHandle & EventEmitter).once('close', () => {
      if (this.readerClosed(id)) this.#peer?.reading(id, undefined);
    });
    return fh;
  }

  /** A reader of the body of `id` (`size` bytes) opened it (in the primary: a worker's first); returns whether it is the first. */
  readerOpened(id: string, size: number): boolean {
    const reading = this.#reading.get(id);
    if (reading) reading.readers++;
    else this.#reading.set(id, { readers: 1, size });
    return !reading;
  }

  /** A reader of the body of `id` closed it (in the primary: a worker's last); returns whether it was the last. */
  readerClosed(id: string): boolean {
    const left = this.#reading.get(id);
    if (!left || --left.readers > 0) return false;
    this.#reading.delete(id);
    return true;
  }

  /**
   * A worker found the body of `id` replaced by another worker's (a mirror object or a name
   * fetched anew) before the primary told it: it forgets what it knew (its next lookup
   * reads the new sidecar). Undefined, for the callers' answer.
   */
  #replaced(id: string): undefined {
    if (this.#peer) this.forget(id);
    return undefined;
  }

  /** The body of a small committed entry `hit` (see #readSmall); undefined when it cannot be served. */
  readSmall(hit: Hit): Buffer | undefined {
    return this.#readSmall(hit.id, hit.file, hit.meta.size, hit.verify, hit.ino);
  }

  /**
   * Reads a small body with blocking calls, as nginx does: a few KiB in the page cache cost
   * four syscalls (open, fstat, read, close), where the thread pool's open, stat, read and close cost a hit from
   * disk several hundred µs of CPU on a slow guest (hot small, before the objects were in
   * memory). Checks `verify` when given, then keeps the body in memory. Undefined when
   * the file is gone or is a claim (evicted meanwhile), unreadable, or damaged (then dropped).
   */
  #readSmall(id: string, file: string, size: number, verify: Digest | undefined, ino?: number): Buffer | undefined {
    const body = Buffer.allocUnsafe(size);
    try {
      const fd = openSync(file, 'r');
      try {
        const st = fstatSync(fd);
        if (!isComplete(st)) return undefined;
        if (isReplaced(st, size, ino)) return this.#replaced(id);
        if (readSync(fd, body, 0, size, 0) !== size) return undefined;
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') this.#log.warn({ id, err: errorMessage(err) }, 'cannot read a stored body');
      return undefined;
    }
    if (verify) {
      if (createHash(verify.algo).update(body).digest('hex') !== verify.hex) {
        this.#log.warn({ id }, 'stored blob does not match its digest (cut short by a crash?): dropped');
        this.delete(id);
        return undefined;
      }
      const entry = this.#lru.peek(id);
      if (entry) entry.unverified = false;
    }
    return this.#remember(id, body);
  }

  /**
   * Keeps a small body in memory for later hits (within the budget), from its first hit on:
   * not from its fill. Kept from the fill, each cold miss held its body (undici's read of
   * it) until the budget was full: fresh pages and old-generation objects on every miss of
   * a process that has not yet filled it, for objects most of which nobody asks again
   * (bench/ab-cache.ts cold, 2026-12-06: 722 against 585, then 450 against 388 µs of CPU
   * per cold 4 KiB miss). Returns the body to serve: the copy held, or `body` when none is.
   */
  #remember(id: string, body: Buffer): Buffer {
    const entry = this.#lru.peek(id);
    if (!entry || entry.body || body.length > SMALL_MAX) return body;
    const held = this.#heldBodies.hold(body);
    if (!held) return body;
    entry.body = held;
    return held;
  }

  /** Peeks without touching recency (tests, stats). */
  has(id: string): boolean {
    return this.#lru.has(id);
  }

  delete(id: string): void {
    this.#lru.delete(id);
  }

  /**
   * Replaces the sidecar of a committed entry (after a revalidation). Updates of one entry
   * run one after another, in the order asked: two revalidations overlapping (two requests'
   * 304s) each wrote their sidecar and charged its size, and the first one's could land
   * last on disk, or stay in the index (the second's recharge found the entry the first
   * had replaced, and left it alone). The last asked is the one kept, and charged.
   */
  async updateMeta(id: string, meta: EntryMeta): Promise<void> {
    const revalidated = this.#lru.peek(id);
    if (!revalidated) return;
    const run = (): Promise<void> => this.#updateMeta(id, revalidated, meta);
    // after the one before, however it ended (its caller has its error)
    const update = (this.#metaUpdates.get(id) ?? Promise.resolve()).then(run, run);
    this.#metaUpdates.set(id, update);
    try {
      await update;
    } finally {
      if (this.#metaUpdates.get(id) === update) this.#metaUpdates.delete(id);
    }
  }

  /** updateMeta's turn: `revalidated`, the entry as it was asked for, is updated if the index still holds its body. */
  async #updateMeta(id: string, revalidated: Entry, meta: EntryMeta): Promise<void> {
    // the entry as the index holds it now: the same, or the copy an update before this one
    // charged anew (#recharge), with the inode that update learnt; not one committed since
    const entry = this.#lru.peek(id);
    if (!entry || (entry !== revalidated && (entry.ino === undefined || entry.ino !== revalidated.ino))) return;
    const file = path.join(this.dir, id);
    const side = file + SIDECAR;
    const tmp = this.tempPath();
    try {
      // another worker's body replaced the one revalidated: its own sidecar stays as it is
      const { ino } = await stat(file);
      if (entry.ino !== undefined && ino !== entry.ino) return void this.#replaced(id);
      // known now, for the updates after this one (above)
      revalidated.ino = entry.ino = ino;
      const text = sidecarText(meta, ino);
      await writeFile(tmp, text);
      // From here on without a pause: no commit of this process starts in between.
      const mine = this.#swapSidecar(side, ino, tmp);
      if (mine === undefined) return void this.#replaced(id);
      entry.meta = meta;
      // The body evicted meanwhile (the primary unlinks in the background): the sidecar just
      // written would stay on disk without it, counted by no index, until a restart. Only
      // this one goes: another process's commit may have put its own there since.
      if (!statSync(file, { throwIfNoEntry: false })) {
        const aside = this.#takeAside(side, mine);
        if (aside) rmSync(aside, { force: true });
        return void this.forget(id);
      }
      this.#recharge(id, entry, Buffer.byteLength(text));
    } catch (err) {
      // evicted before the update: nothing to update
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return void this.forget(id);
      this.#log.error({ id, err: errorMessage(err) }, 'cannot update cache sidecar');
    } finally {
      await this.discardTemp(tmp); // once linked in place, only a second name
    }
  }

  /**
   * Puts the sidecar written at `tmp` (naming the body of inode `ino`) in place of `side`, as
   * a compare-and-swap across processes: only over a sidecar naming the same body, never over
   * a commit's between its two renames (its sidecar names its new body, not renamed yet), nor
   * over one landing meanwhile. The one in place is renamed aside and put back unless it is
   * the one checked; the new one is linked in, which fails on a name taken since (by a commit).
   * For those few syscalls the entry has no sidecar: another worker looking it up then misses
   * it (and fills it again), which is safe, where a sidecar naming the old body beside a new
   * one loses the entry. Returns the new sidecar's inode, undefined when it was not put.
   */
  #swapSidecar(side: string, ino: number, tmp: string): number | undefined {
    let held: { ino: number; names: number | undefined };
    try {
      const fd = openSync(side, 'r');
      try {
        held = { ino: fstatSync(fd).ino, names: (JSON.parse(readFileSync(fd, 'utf8')) as SidecarFile).ino };
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    // (a sidecar naming no body is older than commits that name theirs: never a commit's)
    if (held.names !== undefined && held.names !== ino) return undefined;
    const mine = statSync(tmp).ino;
    const aside = this.#takeAside(side, held.ino);
    if (!aside) return undefined;
    try {
      return linkUnlessTaken(tmp, side) ? mine : undefined; // not linked: a commit's sidecar, newer, landed meanwhile
    } catch (err) {
      linkUnlessTaken(aside, side);
      throw err;
    } finally {
      rmSync(aside, { force: true });
    }
  }

  /**
   * Renames `file` aside when it is the inode `ino`, and returns where (the caller removes
   * it); what was taken is put back when it is another file, and undefined returned.
   */
  #takeAside(file: string, ino: number): string | undefined {
    const aside = this.tempPath();
    try {
      renameSync(file, aside);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    if (statSync(aside).ino === ino) return aside;
    linkUnlessTaken(aside, file); // put back, unless a newer one took the name since
    return undefined;
  }

  /**
   * Charges an entry whose sidecar was rewritten at its new size (a revalidation's 304 can
   * bring longer headers), here and in the primary's index; one replaced meanwhile is left
   * alone. One now larger than the cache could hold is deleted (files and all).
   */
  #recharge(id: string, entry: Entry, sidecar: number): void {
    if (entry.sidecar === sidecar || this.#lru.peek(id) !== entry) return;
    if (this.footprint(id, entry.size, sidecar) > this.maxSize) return this.delete(id);
    // the same entry, sized anew: not disposed of (its body in memory stays counted)
    this.#lru.set(id, { ...entry, sidecar }, { noDisposeOnSet: true });
    this.#peer?.committed(id, entry.size, entry.meta?.storedAt ?? entry.storedAt ?? Date.now(), sidecar);
  }

  tempPath(): string {
    return path.join(this.dir, 'tmp', tempName());
  }

  /**
   * Removes a temp file no entry will take. Never throws: it runs in cleanup paths, where a
   * failing disk (EIO, a filesystem turned read-only) must not replace the error being
   * handled nor reject a promise nobody awaits. A failure is a storage failure (logged, and
   * the cache passes requests through for a while); the next start clears the tmp directory.
   */
  async discardTemp(file: string): Promise<void> {
    await rm(file, { force: true }).catch((err: unknown) => void this.storageFailure(err, 'temp-file'));
  }

  /**
   * The temp file a large fill holding `claim` writes its body to, as a FileHandle: the
   * claim's own file, or for a claim under the blob's own name a new one, renamed over it
   * at commit. The claim's descriptor is closed.
   */
  async openClaim(claim: FillClaim): Promise<{ path: string; fh: FileHandle }> {
    if (claim.fd !== undefined) {
      claim.ino = fstatSync(claim.fd).ino;
      closeSync(claim.fd);
    }
    claim.fd = undefined;
    if (claim.inPlace) return this.createTemp();
    let fh: FileHandle | undefined;
    try {
      // Opened again by its name: the file there must still be this claim's. Another's (the
      // claim taken for an orphan's and claimed anew meanwhile) would get two fills' bytes.
      fh = claim.ino === undefined ? await open(claim.path, 'r+') : await openIfInode(claim.path, 'r+', claim.ino);
    } catch (err) {
      throw this.storageFailure(err, 'claim');
    }
    if (!fh) throw new StorageError('the claim of this fill is no longer its file (taken for an orphan\'s): nothing is written');
    return { path: claim.path, fh };
  }

  /** Opens a new, exclusive temp file for a fill. Throws StorageError when the disk refuses. */
  async createTemp(): Promise<{ path: string; fh: FileHandle }> {
    if (this.isFull()) throw new StorageError('cache disk is full (cooling down)');
    const p = this.tempPath();
    try {
      return { path: p, fh: await open(p, fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY, 0o644) };
    } catch (err) {
      throw this.storageFailure(err, 'temp-file');
    }
  }

  /**
   * Throws StorageError unless the filesystem has room for `size` more bytes. Uses the
   * last statfs figure (minus what was reserved since) and refreshes it in the background
   * once it is a second old: a statfs queued behind a backlog of commits on the thread
   * pool would otherwise hold every cold request. A refusal waits for a fresh figure.
   * `unkept`: the bytes go to a temp file that no entry will take (an object larger than
   * the cache, shared by its readers and removed after them): a size over the cache's is
   * taken, and nothing is evicted for it. `evict` (by default unless `unkept`): room the disk
   * lacks is made by evicting the least recently used entries, and a lack left is a storage
   * failure; without it only the free space counts, and its lack is no storage failure (the
   * disk still takes what fits).
   */
  async reserve(size: number, { unkept = false, evict = !unkept }: { unkept?: boolean; evict?: boolean } = {}): Promise<Reservation> {
    if (this.exceedsCache(size) && !unkept) throw new StorageError(`object of ${size} bytes exceeds the cache size ${this.maxSize}`);
    if (size >= FRESH_FIGURE_MIN) this.#readFree();
    const stale = this.#free.at !== 0 && Date.now() - this.#free.at > this.#statfsMaxAgeMs;
    // A figure is awaited when there is none yet, and before a refusal on an old one: nothing
    // reserves during a cool-down, and the space freed meanwhile would start another one.
    if (this.#free.at === 0 || (stale && this.#free.bytes < size + FREE_MARGIN)) await this.#refreshFree().catch((err: unknown) => { throw this.storageFailure(err, 'free-space'); });
    else if (stale) void this.#refreshFree().catch(() => undefined);
    // A disk that holds the whole budget (a size limit set close to the filesystem's size)
    // has no room for a large object until the index evicts at its commit: the least
    // recently used entries make it now, as the budget would then.
    if (this.#free.bytes < size + FREE_MARGIN && evict) return this.#makeRoomFor(size);
    return this.#take(size, evict);
  }

  /**
   * Evicts what a reservation of `size` bytes lacks, then takes the room: one reservation at
   * a time, each reckoning with the room those before it made and took. Reservations that
   * made room at the same moment each evicted all they lacked on the same figure, several
   * times what they lacked between them.
   */
  #makeRoomFor(size: number): Promise<Reservation> {
    const turn = this.#roomTurns.then(async () => {
      // One that waited behind a storage failure is refused with it, evicting nothing: the
      // fills queued at that moment each counted (and logged) a failure of their own.
      if (this.isFull()) throw new StorageError(`no room made for ${size} bytes: the disk refuses writes for now (a storage failure in the last 30 s)`);
      // The disk's figure now, before evicting for it and again after: one up to a second old
      // misses the room freed since (fills that ended without writing what they reserved,
      // the evictions of other workers' fills), and the cache evicted objects for nothing,
      // then took a lack of it for a failing disk. (Reservations taken meanwhile are counted:
      // the figure is the disk's less what they have not written.)
      this.#readFree();
      const lacking = size + FREE_MARGIN - this.#free.bytes;
      if (lacking > 0) {
        const freed = await this.makeRoom(lacking, true);
        this.#readFree(); // the evicted files unlinked: their room, but for those still being read
        if (this.#isHeldByReaders(lacking, freed)) throw new StorageError(`no space left for ${size} bytes: ${this.readBytes} bytes are held by bodies being read`);
        const short = size + FREE_MARGIN - this.#free.bytes;
        if (short > 0 && this.isHeldByCache(short)) {
          const reserved = this.#reserved + this.#othersReserved.bytes;
          throw new StorageError(`no space left for ${size} bytes now: the cache's own use of the disk holds it (objects kept ${this.bytes} bytes, ${this.readBytes} being read; fills in progress ${reserved} bytes reserved)`);
        }
      }
      return this.#take(size, true);
    });
    this.#roomTurns = turn.then(() => undefined, () => undefined);
    return turn;
  }

  /**
   * Takes `size` bytes of the free-space figure for a reservation; throws when it has not
   * them, a storage failure when `lackIsFailure` (room was made by evicting: see reserve).
   */
  #take(size: number, lackIsFailure: boolean): Reservation {
    if (this.#free.bytes < size + FREE_MARGIN) {
      // what holds the disk, for whoever reads the log: the objects kept (those being read among them), the fills to come
      const refusal = `no space left for ${size} bytes (${this.#free.bytes} free; the cache holds ${this.bytes}, ${this.readBytes} of them being read; ${this.#reserved + this.#othersReserved.bytes} reserved by fills in progress, ${this.#unwritten + this.#othersReserved.unwritten} of them not written yet)`;
      throw lackIsFailure ? this.storageFailure(new Error(refusal), 'reservation') : new StorageError(refusal);
    }
    this.#free.bytes -= size;
    this.#reckon(size, size);
    let left = size;
    let ended = false;
    return {
      size,
      written: (bytes) => {
        const settled = Math.min(bytes, left);
        left -= settled;
        if (settled > 0) this.#reckon(0, -settled);
      },
      end: () => {
        if (ended) return;
        ended = true;
        this.#reckon(-size, -left);
        left = 0;
      },
    };
  }

  /**
   * The room a body of unknown length holds as it is written: nothing is taken ahead (its
   * writes make room when they find the disk full), but what it wrote counts as the cache's
   * own use of the disk (isHeldByCache, in every worker) until it ends, as a reservation's
   * does; its `size` is what it wrote so far. Uncounted, a large one being written read as
   * a disk something else fills: the next fill lacking room took it for a storage failure.
   */
  holdAsWritten(): Reservation {
    let held = 0;
    let ended = false;
    return {
      get size() {
        return held;
      },
      written: (bytes) => {
        if (ended) return;
        held += bytes;
        this.#reckon(bytes, 0);
      },
      end: () => {
        if (ended) return;
        ended = true;
        this.#reckon(-held, 0);
      },
    };
  }

  /** The reservations in progress changed by `bytes` in all, `unwritten` of them not written yet. */
  #reckon(bytes: number, unwritten: number): void {
    this.#reserved += bytes;
    this.#unwritten += unwritten;
    this.#peer?.reservations({ bytes: this.#reserved, unwritten: this.#unwritten });
  }

  /** In a worker: the room the other workers' reservations in progress hold. */
  get #othersReserved(): Reserved {
    return this.#peer?.othersReserved ?? NONE_RESERVED;
  }

  /** The free space a statfs figure leaves for new reservations: less what every fill reserved and has not written yet. */
  #freeFrom(fs: { bavail: number; bsize: number }): { bytes: number; at: number } {
    return { bytes: fs.bavail * fs.bsize - this.#unwritten - this.#othersReserved.unwritten, at: Date.now() };
  }

  /**
   * Evicts the least recently used entries until `bytes` are freed (or none is left), and
   * resolves with the bytes freed once their files are unlinked. `whole`: only if the
   * entries hold all of `bytes`; else nothing is evicted (something else holds the disk,
   * and emptying the cache would not make the room). In a worker, the primary evicts (it
   * decides what leaves the disk), passing over the bodies any worker reads, and tells the
   * bytes they hold (readBytes).
   */
  async makeRoom(bytes: number, whole = false): Promise<number> {
    if (this.#peer) return this.#peer.makeRoom(bytes, whole);
    if (whole && this.#lru.calculatedSize - this.#readBytes((id) => this.#lru.has(id)) < bytes) return 0;
    let freed = 0;
    const unlinked: Promise<void>[] = [];
    // Entries being read are passed over (each once): their room would come back only when
    // their readers close. Passed over, they become the most recently used: they are in use.
    for (let passed = 0; freed < bytes && passed <= this.#reading.size;) {
      const id = this.#lru.rkeys().next().value;
      if (id !== undefined && this.#reading.has(id)) {
        this.#lru.get(id);
        passed++;
        continue;
      }
      const entry = id === undefined ? undefined : this.#lru.pop();
      if (id === undefined || !entry) break;
      freed += this.footprint(id, entry.size, entry.sidecar);
      const unlinking = this.#unlinking.get(id);
      if (unlinking) unlinked.push(unlinking);
    }
    await Promise.all(unlinked);
    // debug: on a disk that holds the budget, every fill may come here (start-up warns of such a size limit)
    if (freed > 0) this.#log.debug({ freed, wanted: bytes }, 'evicted the least recently used objects to make room for a fill');
    return freed;
  }

  /**
   * Whether the `lacking` bytes that evicting made only `freed` of are held by files being
   * read: they come back when those are closed. The fill is then passed through, and the
   * disk is not failing (no cool-down for every fill).
   */
  #isHeldByReaders(lacking: number, freed: number): boolean {
    return freed < lacking && lacking <= freed + this.readBytes;
  }

  /**
   * Whether the cache's own use of the disk holds the `lacking` bytes that evicting did not
   * make: the objects kept (too few to make it all: makeRoom's `whole`), the bodies being read
   * (an evicted file keeps its room until its last reader closes it) and the fills in
   * progress in every worker (the room they reserved, written or not; what a body of unknown
   * length wrote: holdAsWritten). Its room comes back
   * as those end: a disk that holds the budget under many large fills at once, not a failing
   * disk, nor one that something else fills (the lack would be larger than all of these).
   * `own`: the asking fill's reservation, not counted.
   */
  isHeldByCache(lacking: number, own = 0): boolean {
    return lacking <= this.bytes + this.readBytes + this.#reserved + this.#othersReserved.bytes - own;
  }

  /** The bytes of the bodies being read in the whole cache (in a worker, as the primary last said: see makeRoom). */
  get readBytes(): number {
    return this.#peer ? this.#peer.readBytes : this.#readBytes();
  }

  /** The bytes of the bodies being read (see #reading), those of the ids `counted` only if given. */
  #readBytes(counted: (id: string) => boolean = () => true): number {
    let bytes = 0;
    for (const [id, { size }] of this.#reading) if (counted(id)) bytes += size;
    return bytes;
  }

  /** The free space now, with a blocking statfs (see FRESH_FIGURE_MIN); a failure is a storage failure. */
  #readFree(): void {
    try {
      this.#free = this.#freeFrom(statfsSync(this.dir));
    } catch (err) {
      throw this.storageFailure(err, 'free-space');
    }
  }

  /** One statfs at a time; callers arriving meanwhile share it. */
  #refreshFree(): Promise<void> {
    this.#freeRefresh ??= statfs(this.dir).then((fs) => {
      this.#free = this.#freeFrom(fs);
    }).finally(() => {
      this.#freeRefresh = undefined;
    });
    return this.#freeRefresh;
  }

  /**
   * The error for a commit's write of `needed` bytes that failed: no room (ENOSPC) that the cache's
   * own use of the disk holds beyond the writer's `own` reservation (see isHeldByCache) is
   * only that: the body is not kept, and the reservations to come make room by evicting.
   * Anything else (or a disk that something else fills) is a storage failure.
   */
  writeRefused(err: unknown, needed: number, own = 0): StorageError {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC' || !this.isHeldByCache(needed, own)) return this.storageFailure(err, 'commit');
    this.#log.info({ dir: this.dir, needed }, 'no room left on the disk, held by what the cache keeps and fills: a body not kept');
    return new StorageError(`no space left for ${needed} bytes: the cache's own use of the disk holds it`);
  }

  /** Logs a storage failure, starts the passthrough cool-down, and returns the StorageError to throw. */
  storageFailure(err: unknown, during: DiskTask): StorageError {
    const message = errorMessage(err);
    if (err instanceof StorageError) return err;
    this.#fullUntil = Date.now() + FULL_COOLDOWN_MS;
    this.#failures++;
    this.#log.error({ err: message, dir: this.dir, during }, 'cache storage failure: passing requests through for 30s');
    return new StorageError(`cache storage failure: ${message}`, { cause: err });
  }

  /**
   * Whether a body of `size` bytes is larger than the cache could ever hold: the one rule
   * of reservations, fills and commits (the index would refuse it, and its file would stay
   * on disk, counted by nothing). Its blocks are counted, as the index counts them; an http
   * entry's sidecar, whose size is known at commit only, is counted there (#indexCommitted).
   */
  exceedsCache(size: number): boolean {
    return this.#blocks(size) > this.maxSize;
  }

  /**
   * What an entry costs against the size limit: its files' bytes in whole blocks of the
   * filesystem, a block at least per file (an empty one takes an inode), as bazel-remote
   * and nginx count. Its body only, tiny answers (a 9-byte 404) were charged a few bytes
   * each: a limit in gigabytes let hundreds of millions of them pile up, and the disk ran
   * out of inodes, and the process of memory, long before the limit was reached. An http
   * entry's sidecar counts as one block when its size is not known.
   */
  footprint(id: string, size: number, sidecar: number | undefined): number {
    return this.#blocks(size) + (isCasId(id) ? 0 : this.#blocks(sidecar ?? 1));
  }

  /**
   * Refuses a budget below a name's or mirror entry's least footprint (a block for its body,
   * one for its sidecar): such entries would never be kept, silently. One block holds a
   * blob of a block at most; less holds nothing.
   */
  #checkMaxSize(): void {
    const least = this.footprint(httpId(''), 0, 1);
    if (this.maxSize >= least) return;
    const { place, field, file, line } = this.#maxSizeSetting ?? { place: 'maxSize', field: 'maxSize' };
    const holds = this.maxSize < this.#block ? 'nothing (an object takes a block at least)' : `one blob of at most ${this.#block} bytes, and no name or mirror entry (a block for its body, one for its headers file)`;
    throw new ConfigError(`${place}: ${this.maxSize} ${this.maxSize === 1 ? 'byte' : 'bytes'} would hold ${holds}; give at least ${least} bytes (two blocks of ${this.#block} bytes, the block of the filesystem holding ${this.dir})`, file, line, field);
  }

  /** The bytes of the sidecar of the http entry `id` on disk, if there (a blocking stat: at start only). */
  #sidecarBytes(id: string): number | undefined {
    return statSync(path.join(this.dir, id + SIDECAR), { throwIfNoEntry: false })?.size;
  }

  /** `bytes` rounded up to whole blocks, one at least. */
  #blocks(bytes: number): number {
    return Math.max(1, Math.ceil(bytes / this.#block)) * this.#block;
  }

  /** The filesystem's block (statfs), or DEFAULT_BLOCK when it says none. */
  #readBlock(): void {
    try {
      const { bsize } = statfsSync(this.dir);
      if (bsize > 0) this.#block = bsize;
    } catch {
      // no figure: the default, and the first reservation's statfs fails loudly if it must
    }
  }

  isFull(): boolean {
    return Date.now() < this.#fullUntil;
  }

  /** Storage failures since start (write errors, a full disk). */
  get failures(): number {
    return this.#failures;
  }

  /**
   * Makes a completed temp file visible under `id`: flushed (see `needsSync`) and closed,
   * then for http entries the sidecar, and the body last (atomic renames). `claim`: the
   * caller's, a fill's (under the blob's own name, it is what the body replaces).
   * A body not stored (see CommitOutcome) has its temp file removed.
   */
  async commit(id: string, tmp: { path: string; fh: FileHandle }, meta: EntryMeta, claim?: FillClaim): Promise<CommitOutcome> {
    const file = path.join(this.dir, id);
    const tmpSide = isCasId(id) ? undefined : this.tempPath();
    let ino: number | undefined;
    let sidecar: number | undefined;
    let marked = false;
    try {
      if (needsSync(id, meta.size)) await tmp.fh.sync();
      if (tmpSide) ino = (await tmp.fh.stat()).ino;
      await tmp.fh.close();
      if (this.exceedsCache(meta.size)) {
        await rm(tmp.path, { force: true });
        return 'larger-than-cache';
      }
      // A blob whose name is another fill's claim (a PUT kept while a GET fills it): that
      // fill stores it. Renamed over, the claim's removal by a failing fill would take this body.
      if (!claim?.inPlace && isCasId(id) && this.#isClaim(file)) {
        await rm(tmp.path, { force: true });
        return 'left-to-its-fill';
      }
      const shard = path.dirname(file);
      if (!this.#dirs.has(shard)) {
        await mkdir(shard, { recursive: true });
        this.#dirs.add(shard);
      }
      if (tmpSide) {
        const text = sidecarText(meta, ino!);
        sidecar = Buffer.byteLength(text);
        await writeFile(tmpSide, text);
        this.#committing.set(id, (this.#committing.get(id) ?? 0) + 1);
        marked = true;
        await rename(tmpSide, file + SIDECAR);
      }
      await rename(tmp.path, file);
    } catch (err) {
      if (marked) this.#doneCommitting(id);
      // The body's temp file is the caller's to remove (a claim is removed exactly once, see Fill).
      // The sidecar's goes quietly: this failure is the one counted and logged.
      if (tmpSide) await rm(tmpSide, { force: true }).catch(() => undefined);
      throw this.writeRefused(err, sidecar ?? 0);
    }
    try {
      return this.#indexCommitted(id, meta, ino, sidecar);
    } finally {
      if (marked) this.#doneCommitting(id); // even when telling the primary fails: else lookups of id would miss for good
    }
  }

  /** A commit of `id` counted in #committing ended (indexed, or failed). */
  #doneCommitting(id: string): void {
    const left = (this.#committing.get(id) ?? 1) - 1;
    if (left > 0) this.#committing.set(id, left);
    else this.#committing.delete(id);
  }

  /**
   * Commits a small body (at most SMALL_MAX bytes) with blocking calls, as nginx does: a
   * few tens of microseconds on the event loop cost less than the thread-pool round trips
   * of open, write, close and rename (measured on cold 4 KiB objects: 3,800 against 2,900
   * per second, warm JIT, one process). A body not stored (larger than the cache: a size
   * limit below SMALL_MAX) leaves nothing on disk; a claim's file is the caller's to remove.
   * `reserved`: the room the caller reserved for the body (see writeRefused).
   */
  commitSmall(id: string, body: Buffer, meta: EntryMeta, claim?: FillClaim, reserved = 0): Exclude<CommitOutcome, 'left-to-its-fill'> {
    if (this.isFull()) throw new StorageError('cache disk is full (cooling down)');
    if (this.exceedsCache(meta.size)) return 'larger-than-cache';
    const file = claim?.inPlace ? claim.path : path.join(this.dir, id);
    // Written beside its final name (as nginx's use_temp_path=off does): creating files in
    // one busy tmp/ directory cost several times more per file. Start-up removes leftovers.
    const tmp = claim?.path ?? path.join(path.dirname(file), TEMP_PREFIX + tempName());
    const tmpSide = isCasId(id) ? undefined : this.tempPath();
    let ino: number | undefined;
    let sidecar: number | undefined;
    try {
      if (claim?.fd !== undefined) {
        const fd = claim.fd;
        for (let off = 0; off < body.length;) off += writeSync(fd, body, off, body.length - off);
        if (needsSync(id, body.length)) fsyncSync(fd);
        if (claim.inPlace) fchmodSync(fd, BODY_MODE); // complete: see FillClaim
        claim.fd = undefined;
        closeSync(fd);
      } else {
        this.#ensureShard(path.dirname(file));
        writeFileSync(tmp, body, { flag: 'wx', mode: 0o644, flush: needsSync(id, body.length) });
      }
      if (tmpSide) {
        ino = statSync(tmp).ino;
        const text = sidecarText(meta, ino);
        sidecar = Buffer.byteLength(text);
        writeFileSync(tmpSide, text);
        renameSync(tmpSide, file + SIDECAR);
      }
      if (tmp !== file) renameSync(tmp, file);
    } catch (err) {
      // A claim's file is the caller's to remove (exactly once, see Fill).
      for (const p of [claim ? undefined : tmp, tmpSide]) if (p) rmSync(p, { force: true });
      throw this.writeRefused(err, body.length + (sidecar ?? 0), reserved);
    }
    return this.#indexCommitted(id, meta, ino, sidecar);
  }

  /**
   * A body renamed into place: indexed here, and told to the primary in a worker. A blob's
   * meta follows from its id, and is made on its first hit (as for the blobs found at
   * start): one never asked again costs the index no objects to carry through collections.
   */
  #indexCommitted(id: string, meta: EntryMeta, ino: number | undefined, sidecar: number | undefined): 'stored' | 'larger-than-cache' {
    this.#lru.set(id, isCasId(id) ? { size: meta.size, meta: undefined, storedAt: meta.storedAt } : { size: meta.size, sidecar, meta, ...(ino !== undefined ? { ino } : {}) });
    if (!this.#lru.has(id)) {
      // Refused by the index: a body that fits the limit, with a sidecar that does not (exceedsCache).
      try {
        for (const file of this.#entryFiles(id)) rmSync(file, { force: true });
      } catch (err) {
        this.storageFailure(err, 'commit'); // left on disk, counted by nothing: the next start drops or indexes it
      }
      return 'larger-than-cache';
    }
    this.#peer?.committed(id, meta.size, meta.storedAt, sidecar);
    return 'stored';
  }

  /** The files of an entry: its body, and an http entry's sidecar. */
  #entryFiles(id: string): string[] {
    const file = path.join(this.dir, id);
    return isCasId(id) ? [file] : [file, file + SIDECAR];
  }
}
