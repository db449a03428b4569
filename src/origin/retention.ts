// Retention: the origin otherwise keeps every run manifest, artifact and base forever. A
// prune deletes the names older than `maxAge` (artifacts and run manifests by when the origin
// stored them, bases unless among the project's `keepBases` newest or named by a run kept),
// then the blobs only those names pointed at, and those artifacts and bases pointed at before
// they were uploaded again (context.ts replacedRecord), or stored for a name by a process killed
// before it wrote the name, or named before by a name such a process wrote anew
// (naming-marks.ts). A blob no name ever pointed at (a tooltool
// asset, uploaded to /cas alone) is never deleted, nor one uploaded internal; a write in
// flight, or an upload of the last minutes, keeps what it names (references.ts). The blobs a
// prune frees are written down before their names go (PENDING), so that a prune stopped
// midway (a shutdown, a storage error) leaves them to the next one, not to nobody.
import type { FastifyBaseLogger } from 'fastify';
import { Counter, Gauge } from 'prom-client';
import { errorMessage, FleetError, isNoRoom, NotFoundError } from '../errors.js';
import { DIGEST_ALGORITHMS, isStoredDigest, isStoredHex, parseDigestString } from '../store/digest.js';
import { replacedRecord, uploadRecord, type OriginContext, type ReplacedRecord, type UploadRecord } from './context.js';
import type { LeftMark } from './naming-marks.js';
import { surveyNames, type Due } from './retention-survey.js';

export interface RetentionPolicy {
  /** Names older than this are deleted. */
  readonly maxAgeMs: number;
  /** Per project, the newest bases kept whatever their age (push deltas against the three newest). */
  readonly keepBases: number;
}

export interface PruneReport {
  readonly dryRun: boolean;
  /** Names stored before this (ISO 8601) were due. */
  readonly cutoff: string;
  /** Names deleted (or, dry, due), by kind. */
  readonly names: { artifacts: number; runs: number; bases: number };
  /** Blobs deleted (or, dry, due) and their bytes. */
  readonly blobs: number;
  readonly bytes: number;
  /** Blobs the store failed to delete, left to the next prune. */
  readonly failed: number;
  /**
   * Blobs freed but kept for now, and their bytes: uploaded or named in the last 10 minutes,
   * or before a restart less than 10 minutes ago (a write may be in flight); a later prune
   * deletes them (references.ts).
   */
  readonly heldBack: number;
  readonly heldBackBytes: number;
  /** The prune was stopped (the server closing) before it deleted every freed blob; the next one goes on. */
  readonly stopped: boolean;
  readonly durationMs: number;
}

/** Where a prune writes down the blobs it frees before deleting their names; removed once they are. */
const PENDING = ['_retention', 'pending'];
/**
 * When the last prune completed (fleetcache_retention_last_prune_timestamp_seconds), kept for
 * the next process: a gauge back at 0 after each restart fired the alert on its age at every deploy.
 */
const LAST_PRUNE = ['_retention', 'last-prune'];

/** A blob freed and not deleted yet: digest, size, and when a prune freed it (ms since the epoch). */
type Freed = [digest: string, size: number, freedAt: number];

interface PendingRecord {
  /** Each blob freed and not deleted yet; a list written by an earlier version has no freedAt. */
  readonly blobs: Array<Freed | [digest: string, size: number]>;
}

/** Whether `entry` of a PENDING list is one as written: a digest, a size, and when it was freed (absent from an earlier version's). */
function isFreedEntry(entry: unknown): boolean {
  if (!Array.isArray(entry) || entry.length < 2 || entry.length > 3) return false;
  const [digest, size, freedAt] = entry as unknown[];
  return typeof digest === 'string' && isStoredDigest(digest) && Number.isSafeInteger(size) && (size as number) >= 0 && (freedAt === undefined || Number.isFinite(freedAt));
}

/** Whether a replacedRecord reads as written: a size, and when. */
function isReplacedRecord(value: unknown): value is ReplacedRecord {
  const { size, at } = (value ?? {}) as { size?: unknown; at?: unknown };
  return Number.isSafeInteger(size) && (size as number) >= 0 && Number.isFinite(at);
}

export class Retention {
  readonly #ctx: OriginContext;
  readonly #policy: RetentionPolicy;
  /** Prunes run one at a time: the periodic one and those asked for over HTTP. */
  #last: Promise<unknown> = Promise.resolve();
  readonly #stopping = new AbortController();
  readonly #namesDeleted: Counter<'kind'>;
  readonly #blobsDeleted: Counter;
  readonly #bytesDeleted: Counter;
  readonly #lastPrune: Gauge;

  /** Told of a blob the store failed to delete (once a prune). */
  readonly #log: Pick<FastifyBaseLogger, 'warn'> | undefined;

  constructor(ctx: OriginContext, policy: RetentionPolicy, log?: Pick<FastifyBaseLogger, 'warn'>) {
    if (!(policy.maxAgeMs > 0) || !Number.isInteger(policy.keepBases) || policy.keepBases < 0) {
      throw new FleetError('FC_ERR_CONFIG', 'retention: maxAge must be positive and keepBases a whole number ≥ 0');
    }
    this.#ctx = ctx;
    this.#policy = policy;
    this.#log = log;
    const registers = [ctx.ledger.registry];
    this.#namesDeleted = new Counter({ name: 'fleetcache_retention_names_deleted_total', help: 'Names deleted by retention prunes, by kind (artifacts, runs, bases)', labelNames: ['kind'], registers });
    // every series from the start: an alert on one sees 0 before the first deletion, not no data
    for (const kind of ['artifacts', 'runs', 'bases'] as const) this.#namesDeleted.inc({ kind }, 0);
    this.#blobsDeleted = new Counter({ name: 'fleetcache_retention_blobs_deleted_total', help: 'Blobs deleted by retention prunes (no name left pointing at them)', registers });
    this.#bytesDeleted = new Counter({ name: 'fleetcache_retention_bytes_deleted_total', help: 'Bytes of the blobs deleted by retention prunes', registers });
    this.#lastPrune = new Gauge({ name: 'fleetcache_retention_last_prune_timestamp_seconds', help: 'When the last prune (not a dry run, not stopped) completed without a failed deletion, Unix time (kept across restarts; 0 before the first)', registers });
  }

  /** Takes the time of the last completed prune from disk (a previous process's), for the gauge. */
  async restore(): Promise<void> {
    const { names } = this.#ctx;
    let problem: string;
    try {
      // JSON, any: `null` too
      const record = await names.find<{ at?: unknown } | null>(LAST_PRUNE);
      if (record === undefined) return;
      const at = record?.at;
      if (typeof at === 'number' && Number.isFinite(at) && at >= 0) return void this.#lastPrune.set(at / 1000);
      problem = 'not {"at": milliseconds since the epoch}';
    } catch (err) {
      problem = errorMessage(err);
    }
    const file = names.fileOf(LAST_PRUNE);
    this.#log?.warn({ file, problem }, `retention: the record of the last prune, ${file}, cannot be read: its time is 0 (unknown) until the next prune, which writes it anew`);
  }

  /** Runs one prune after any running one; `dryRun` deletes nothing and reports what is due. */
  prune(options: { dryRun?: boolean; now?: number } = {}): Promise<PruneReport> {
    const run = this.#last.then(() => this.#prune(options.dryRun === true, options.now ?? Date.now()));
    this.#last = run.catch(() => undefined);
    return run;
  }

  /** Stops the running prune (if any) at its next blob, and waits for it: the server is closing. */
  async stop(): Promise<void> {
    this.#stopping.abort();
    await this.#last;
  }

  async #prune(dryRun: boolean, now: number): Promise<PruneReport> {
    const { names } = this.#ctx;
    const started = Date.now();
    const cutoff = now - this.#policy.maxAgeMs;
    const report = (counts: PruneReport['names'], blobs: number, bytes: number, held: readonly Freed[], failed = 0, stopped = false): PruneReport => ({
      dryRun, cutoff: new Date(cutoff).toISOString(), names: counts, blobs, bytes, failed,
      heldBack: held.length, heldBackBytes: held.reduce((n, [, size]) => n + size, 0), stopped, durationMs: Date.now() - started,
    });
    if (dryRun) {
      const { due, candidates } = await this.#plan(cutoff, started, now);
      const counts = { artifacts: 0, runs: 0, bases: 0 };
      for (const d of due) counts[d.kind]++;
      const deletable = candidates.filter(([d]) => !this.#ctx.references.inUse(d, now));
      const held = candidates.filter(([d]) => this.#ctx.references.inUse(d, now));
      return report(counts, deletable.length, deletable.reduce((n, [, size]) => n + size, 0), held);
    }
    this.#ctx.references.beginPrune(now);
    try {
      const { due, candidates, replaced, marks, pending } = await this.#plan(cutoff, started, now);
      // written down before any name goes: a prune stopped after this leaves them to the next. A
      // full disk refuses even this small file: the prune goes on without it, as what it deletes
      // makes the room (only a crash before its end would leak the blobs it frees).
      if (candidates.length > 0) {
        await names.put<PendingRecord>(PENDING, { blobs: candidates }).catch((err: unknown) => {
          if (!isNoRoom(err)) throw err;
        });
      }
      // pending now, or accounted for: a record written again since (the blob named and replaced again) stays
      for (const r of replaced) await names.deleteIf<ReplacedRecord>(replacedRecord(r.digest), (current) => current.at === r.at);
      for (const m of marks) await this.#ctx.marks.remove(m.file);
      // Names first: a blob is never gone while a name still points at it.
      const counts = { artifacts: 0, runs: 0, bases: 0 };
      for (const d of due) {
        // a name written again since it was read stays (its write holds the blobs it names)
        if (!(await names.deleteIf<object>(d.segments, (current) => JSON.stringify(current) === d.text))) continue;
        counts[d.kind]++;
        this.#namesDeleted.inc({ kind: d.kind });
      }
      const { blobs, bytes, left, held, failed } = await this.#deleteBlobs(candidates, now);
      if (left.length > 0) await names.put<PendingRecord>(PENDING, { blobs: left });
      else if (candidates.length > 0 || pending) await names.delete(PENDING);
      const stopped = this.#stopping.signal.aborted;
      if (!stopped) {
        await names.removeEmptyDirs(['artifacts']);
        await names.removeEmptyDirs(['projects']);
        if (failed === 0) {
          const at = Date.now();
          this.#lastPrune.set(at / 1000);
          await names.put(LAST_PRUNE, { at }).catch((err: unknown) => this.#log?.warn({ err }, 'cannot record the time of the last prune'));
        }
      }
      return report(counts, blobs, bytes, held, failed, stopped);
    } finally {
      this.#ctx.references.endPrune();
    }
  }

  /**
   * The names due, and the blobs to delete: those freed now, by names uploaded again
   * (`replaced`, their records as read), stored for a name by a process killed before it
   * wrote the name (`marks`, naming-marks.ts) or left by an earlier prune (PENDING), that no
   * kept name and no internal upload accounts for.
   */
  async #plan(cutoff: number, started: number, now: number): Promise<{ due: Due[]; candidates: Freed[]; replaced: Array<{ digest: string } & ReplacedRecord>; marks: LeftMark[]; pending: boolean }> {
    const { names } = this.#ctx;
    const replaced = await this.#replaced();
    const marks = await this.#ctx.marks.leftovers(now);
    const { due, kept, freed } = await surveyNames(names, cutoff, this.#policy.keepBases, this.#log);
    const all = new Map<string, Freed>();
    const pending = await this.#readPending();
    for (const [digest, size, freedAt] of pending?.blobs ?? []) {
      // Uploaded to /cas itself since it was freed (an asset, stored already: a 200): no longer
      // the expired name's to free (context.ts uploadRecord). A damaged record, or a list written
      // before entries had freedAt, counts as such an upload: a blob kept is bytes, an asset lost is not.
      const upload = await names.find<Partial<UploadRecord>>(uploadRecord(digest)).catch((): Partial<UploadRecord> => ({}));
      const uploadedBefore = upload?.created !== undefined && freedAt !== undefined && upload.created < freedAt;
      if (upload !== undefined && !uploadedBefore) continue;
      all.set(digest, [digest, size, freedAt ?? started]);
    }
    for (const [digest, size] of freed) all.set(digest, [digest, size, started]);
    // bytes also uploaded to /cas itself (an asset) are not a replaced name's to free (context.ts uploadRecord)
    for (const r of replaced) if (!(await names.exists(uploadRecord(r.digest)))) all.set(r.digest, [r.digest, r.size, started]);
    for (const { digest } of marks) {
      // a blob named since (uploaded again) is kept below; one gone since has nothing to free
      if (all.has(digest) || (await names.exists(uploadRecord(digest)))) continue;
      const size = await this.#ctx.store.stat(parseDigestString(digest)).then((st) => st.size, (err: unknown) => {
        if (err instanceof NotFoundError) return undefined;
        throw err;
      });
      if (size !== undefined) all.set(digest, [digest, size, started]);
    }
    return { due, candidates: [...all.values()].filter(([digest]) => !kept.has(digest) && !this.#ctx.internal.has(digest)), replaced, marks, pending: pending !== undefined };
  }

  /**
   * The list an earlier prune left (PENDING), undefined when there is none. One that cannot be
   * read whole (a disk that lost its end: a crash cannot, it is renamed into place whole) is
   * said and read as empty, the safe reading: the blobs it listed stay stored for good, as a
   * crash's would, rather than any deleted on a guess. Found, it is written anew or removed
   * by the prune (`blobs` empty; a dry run leaves it as it is), so the next one reads it whole.
   */
  async #readPending(): Promise<PendingRecord | undefined> {
    const { names } = this.#ctx;
    let problem: unknown;
    try {
      // JSON, any: `null` too
      const record = await names.find<PendingRecord | null>(PENDING);
      if (record === undefined) return undefined;
      if (Array.isArray(record?.blobs) && record.blobs.every(isFreedEntry)) return record;
      problem = 'not a list of [digest, size, freedAt]';
    } catch (err) {
      // a damaged record; an I/O error is not damage, and stops the prune as it would any read
      if (!(err instanceof FleetError && err.code === 'FC_ERR_INTERNAL')) throw err;
      problem = errorMessage(err);
    }
    const file = names.fileOf(PENDING);
    this.#log?.warn({ file, problem }, `retention: the list of the blobs an earlier prune freed, ${file}, is damaged: the blobs it listed stay stored (never deleted on a guess), and a prune (not a dry run) writes the list anew`);
    return { blobs: [] };
  }

  /** The blobs names pointed at before they were uploaded again (replacedRecord); a damaged record is left out. */
  async #replaced(): Promise<Array<{ digest: string } & ReplacedRecord>> {
    const { names } = this.#ctx;
    const out: Array<{ digest: string } & ReplacedRecord> = [];
    const damaged = (file: string, problem: string): void =>
      this.#log?.warn({ file, problem }, `retention: the record of a blob a name no longer points at, ${file}, is damaged (${problem}): left out, that blob is freed by no prune`);
    for (const algo of DIGEST_ALGORITHMS) {
      const prefix = replacedRecord(`${algo}:`).slice(0, -1);
      for (const [hex, record] of await names.list(prefix, isReplacedRecord, (_, file, problem) => damaged(file, problem))) {
        // its file's name is the digest: one not a digest (an editor's file) would fail the PENDING list
        if (isStoredHex(algo, hex)) out.push({ digest: `${algo}:${hex}`, size: record.size, at: record.at });
        else damaged(names.fileOf([...prefix, hex]), 'its name is no digest');
      }
    }
    return out;
  }

  /** Deletes what no write names meanwhile; what it skips, fails on or does not reach (a stop) is `left` to the next prune. */
  async #deleteBlobs(candidates: readonly Freed[], now: number): Promise<{ blobs: number; bytes: number; failed: number; left: Freed[]; held: Freed[] }> {
    const { store, references } = this.#ctx;
    let blobs = 0;
    let bytes = 0;
    let failed = 0;
    const left: Freed[] = [];
    const held: Freed[] = [];
    for (const [i, freed] of candidates.entries()) {
      const [digest, size] = freed;
      if (this.#stopping.signal.aborted) {
        left.push(...candidates.slice(i));
        break;
      }
      try {
        const deletionStart = Date.now();
        const outcome = await references.deleteUnlessNamed(digest, () => store.delete(parseDigestString(digest)), now);
        if (outcome === 'kept') {
          // a write names it, or it was uploaded minutes ago: the next prune looks again (a
          // name by then keeps it; else it goes), rather than no prune ever seeing it again
          left.push(freed);
          held.push(freed);
          continue;
        }
        // deleted (or gone): so is the record of its upload, unless written since the deletion
        // began (an upload that stored the bytes anew, and got its 201, as they went)
        await this.#ctx.names.deleteIf<UploadRecord>(uploadRecord(digest), (current) => !(current.created >= deletionStart));
        // gone already (deleted by a prune stopped before it could write so): off the list,
        // or the same bytes uploaded later as an asset no name points at would be deleted
        if (outcome === 'absent') continue;
      } catch (err) {
        failed++;
        left.push(freed);
        if (failed === 1) this.#log?.warn({ err, digest }, 'retention: a blob could not be deleted; the next prune tries again');
        continue;
      }
      blobs++;
      bytes += size;
      this.#blobsDeleted.inc();
      this.#bytesDeleted.inc(size);
    }
    return { blobs, bytes, failed, left, held };
  }
}
