// Retention: the origin otherwise keeps every run manifest, artifact and base forever. A
// prune deletes the names older than `maxAge` (artifacts by their upload time, run
// manifests by the time push made them, bases unless among the project's `keepBases`
// newest or named by a run kept), then the blobs that only those names pointed at.
// A blob no name ever pointed at (a tooltool asset, uploaded to /cas alone) is never
// deleted, nor one uploaded internal; a write in flight keeps what it names (references.ts).
import { Counter, Gauge } from 'prom-client';
import { FleetError } from '../errors.js';
import { parseDigestString } from '../store/digest.js';
import type { NameRecord } from '../store/names.js';
import type { OriginContext } from './context.js';

export interface RetentionPolicy {
  /** Names older than this are deleted. */
  readonly maxAgeMs: number;
  /** Per project, the newest bases kept whatever their age (push deltas against the three newest). */
  readonly keepBases: number;
}

export interface PruneReport {
  readonly dryRun: boolean;
  /** Names created before this (ISO 8601) were due. */
  readonly cutoff: string;
  /** Names deleted (or, dry, due), by kind. */
  readonly names: { artifacts: number; runs: number; bases: number };
  /** Blobs deleted (or, dry, due) and their bytes. */
  readonly blobs: number;
  readonly bytes: number;
  readonly durationMs: number;
}

/** A run manifest as far as retention reads it (the origin checked the rest when it was written). */
interface RunRecord {
  readonly created?: string;
  readonly base?: { id?: string; digest?: string; size?: number };
  readonly delta?: { digest?: string; size?: number } | null;
}

interface Due {
  readonly segments: string[];
  readonly kind: keyof PruneReport['names'];
  /** The record as read: deleted only if still the same. */
  readonly text: string;
}

type Blobs = Map<string, number>;

function addBlob(blobs: Blobs, digest: string | undefined, size: number | undefined): void {
  if (digest !== undefined) blobs.set(digest, size ?? 0);
}

export class Retention {
  readonly #ctx: OriginContext;
  readonly #policy: RetentionPolicy;
  /** Prunes run one at a time: the periodic one and those asked for over HTTP. */
  #last: Promise<unknown> = Promise.resolve();
  readonly #namesDeleted: Counter<'kind'>;
  readonly #blobsDeleted: Counter;
  readonly #bytesDeleted: Counter;
  readonly #lastPrune: Gauge;

  constructor(ctx: OriginContext, policy: RetentionPolicy) {
    if (!(policy.maxAgeMs > 0) || !Number.isInteger(policy.keepBases) || policy.keepBases < 0) {
      throw new FleetError('FC_ERR_CONFIG', 'retention: maxAge must be positive and keepBases a whole number ≥ 0');
    }
    this.#ctx = ctx;
    this.#policy = policy;
    const registers = [ctx.ledger.registry];
    this.#namesDeleted = new Counter({ name: 'fleetcache_retention_names_deleted_total', help: 'Names deleted by retention prunes, by kind (artifacts, runs, bases)', labelNames: ['kind'], registers });
    this.#blobsDeleted = new Counter({ name: 'fleetcache_retention_blobs_deleted_total', help: 'Blobs deleted by retention prunes (no name left pointing at them)', registers });
    this.#bytesDeleted = new Counter({ name: 'fleetcache_retention_bytes_deleted_total', help: 'Bytes of the blobs deleted by retention prunes', registers });
    this.#lastPrune = new Gauge({ name: 'fleetcache_retention_last_prune_timestamp_seconds', help: 'When the last prune (not a dry run) ended, Unix time', registers });
  }

  get policy(): RetentionPolicy {
    return this.#policy;
  }

  /** Runs one prune after any running one; `dryRun` deletes nothing and reports what is due. */
  prune(options: { dryRun?: boolean; now?: number } = {}): Promise<PruneReport> {
    const run = this.#last.then(() => this.#prune(options.dryRun === true, options.now ?? Date.now()));
    this.#last = run.catch(() => undefined);
    return run;
  }

  async #prune(dryRun: boolean, now: number): Promise<PruneReport> {
    const { names, store, references } = this.#ctx;
    const started = Date.now();
    const cutoff = now - this.#policy.maxAgeMs;
    references.beginPrune();
    try {
      const { due, kept, freed } = await this.#survey(cutoff);
      const counts = { artifacts: 0, runs: 0, bases: 0 };
      let blobs = 0;
      let bytes = 0;
      // Names first: a blob is never gone while a name still points at it.
      for (const d of due) {
        // a name written again since it was read stays (its write holds the blobs it names)
        if (dryRun || (await names.deleteIf<object>(d.segments, (current) => JSON.stringify(current) === d.text))) counts[d.kind]++;
      }
      for (const [digest, size] of freed) {
        if (kept.has(digest) || this.#ctx.internal.has(digest)) continue;
        const deleted = dryRun ? true : await references.deleteUnlessNamed(digest, () => store.delete(parseDigestString(digest)));
        if (!deleted) continue;
        blobs++;
        bytes += size;
      }
      if (!dryRun) {
        await names.removeEmptyDirs(['artifacts']);
        await names.removeEmptyDirs(['projects']);
        for (const [kind, n] of Object.entries(counts)) this.#namesDeleted.inc({ kind }, n);
        this.#blobsDeleted.inc(blobs);
        this.#bytesDeleted.inc(bytes);
        this.#lastPrune.setToCurrentTime();
      }
      return { dryRun, cutoff: new Date(cutoff).toISOString(), names: counts, blobs, bytes, durationMs: Date.now() - started };
    } finally {
      references.endPrune();
    }
  }

  /** Reads every name: which are due, the blobs the others point at, and those only due ones do. */
  async #survey(cutoff: number): Promise<{ due: Due[]; kept: Set<string>; freed: Blobs }> {
    const { names } = this.#ctx;
    const due: Due[] = [];
    const kept = new Set<string>();
    const freed: Blobs = new Map();
    /** A record, or undefined when it is gone or damaged (then it is left alone). */
    const read = async <T>(segments: string[]): Promise<{ record: T; text: string } | undefined> => {
      const record = await names.find<T>(segments).catch(() => undefined);
      return record === undefined ? undefined : { record, text: JSON.stringify(record) };
    };

    for await (const segments of names.walk(['artifacts'])) {
      const found = await read<NameRecord>(segments);
      if (!found) continue;
      const { record } = found;
      if (record.created < cutoff) {
        due.push({ segments, kind: 'artifacts', text: found.text });
        addBlob(freed, record.digest, record.size);
      } else kept.add(record.digest);
    }

    const bases = new Map<string, Array<{ segments: string[]; record: NameRecord; text: string }>>();
    for await (const segments of names.walk(['projects'])) {
      const [, project, kind] = segments;
      if (segments.length !== 4 || project === undefined) continue;
      if (kind === 'bases') {
        const found = await read<NameRecord>(segments);
        if (!found) continue;
        const list = bases.get(project) ?? [];
        list.push({ segments, ...found });
        bases.set(project, list);
        continue;
      }
      if (kind !== 'runs') continue;
      const found = await read<RunRecord>(segments);
      if (!found) continue;
      const { record } = found;
      // push writes `created`; a record without a readable one is dated by its file
      const created = Date.parse(record.created ?? '') || (await names.mtimeMs(segments).catch(() => Date.now()));
      const blobs: Blobs = new Map();
      addBlob(blobs, record.base?.digest, record.base?.size);
      addBlob(blobs, record.delta?.digest ?? undefined, record.delta?.size);
      if (created < cutoff) {
        due.push({ segments, kind: 'runs', text: found.text });
        for (const [digest, size] of blobs) freed.set(digest, size);
      } else for (const digest of blobs.keys()) kept.add(digest);
    }

    for (const list of bases.values()) {
      // newest first, as the base listing (and so push) orders them; a base a kept run
      // names is kept as its blob (machines fetch a run's base by digest), and so its name
      list.sort((a, b) => b.record.created - a.record.created || (a.segments[3]! < b.segments[3]! ? 1 : -1));
      list.forEach((b, i) => {
        const keep = i < this.#policy.keepBases || b.record.created >= cutoff || kept.has(b.record.digest);
        if (keep) kept.add(b.record.digest);
        else {
          due.push({ segments: b.segments, kind: 'bases', text: b.text });
          addBlob(freed, b.record.digest, b.record.size);
        }
      });
    }
    return { due, kept, freed };
  }
}
