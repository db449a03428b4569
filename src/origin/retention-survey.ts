// The survey a prune (retention.ts) starts with: every name read once, to tell which are due
// and which blobs the names kept still point at. A record that cannot be read stops it before
// anything is deleted; one that reads but names no blob as a record does is said and skipped.
import type { FastifyBaseLogger } from 'fastify';
import { errorMessage, FleetError, NotFoundError } from '../errors.js';
import type { NameRecord, NameStore } from '../store/names.js';
import { uploadRecord } from './context.js';
import { blobOfRecord } from './replaced-blob.js';

/** A name due for deletion. */
export interface Due {
  readonly segments: string[];
  readonly kind: 'artifacts' | 'runs' | 'bases';
  /** The record as read: deleted only if still the same. */
  readonly text: string;
}

/** A run manifest as far as retention reads it (the origin checked the rest when it was written). */
interface RunRecord {
  readonly base?: { digest?: string; size?: number };
  readonly delta?: { digest?: string; size?: number } | null;
}

/** Blobs by digest: their sizes. */
type Blobs = Map<string, number>;

interface Survey {
  readonly due: Due[];
  /** The digests of the blobs names kept point at. */
  readonly kept: Set<string>;
  /** The blobs only due names point at. */
  readonly freed: Blobs;
}

/**
 * Reads every name: which are due (stored before `cutoff`; a base unless among its project's
 * `keepBases` newest or named by a run kept), the blobs the others point at (`kept`), and
 * those only due ones do (`freed`). `log` is told of each record skipped.
 */
export async function surveyNames(names: NameStore, cutoff: number, keepBases: number, log: Pick<FastifyBaseLogger, 'warn'> | undefined): Promise<Survey> {
  const due: Due[] = [];
  const kept = new Set<string>();
  const freed: Blobs = new Map();
  /**
   * A record, or undefined when it is gone since listed. One that cannot be read (damaged,
   * an I/O error) stops the prune before anything is deleted: what it names is unknown,
   * and a blob it shares with a due name would go with it.
   */
  const read = async <T>(segments: string[]): Promise<{ record: T; text: string } | undefined> => {
    let record: T | undefined;
    try {
      record = await names.find<T>(segments);
    } catch (err) {
      throw new FleetError('FC_ERR_INTERNAL', `retention: cannot read the name ${segments.join('/')}, so nothing was deleted: ${errorMessage(err)}`, { cause: err });
    }
    return record === undefined ? undefined : { record, text: JSON.stringify(record) };
  };
  /**
   * Says a record whose blob is not one (a digest edited by hand: valid JSON, no digest),
   * which the prune skips: not deleted, no blob freed for it. Listed among the blobs to
   * free, that digest would make their list damaged, and them never deleted.
   */
  const skip = (segments: string[]): void => {
    const name = segments.join('/');
    const file = names.fileOf(segments);
    log?.warn({ name, file }, `retention: the record of the name ${name}, ${file}, does not name a blob as a record does (a digest "<algo>:<hex>" and a size): skipped, neither deleted nor its blob freed`);
  };

  for await (const segments of names.walk(['artifacts'])) {
    const found = await read<NameRecord>(segments);
    if (!found) continue;
    const { record } = found;
    const blob = blobOfRecord(record);
    if (!blob) {
      skip(segments);
      continue;
    }
    if (record.created < cutoff) {
      due.push({ segments, kind: 'artifacts', text: found.text });
      // bytes also uploaded to /cas itself (an asset) are not the artifact's to free (context.ts uploadRecord)
      if (!(await names.exists(uploadRecord(blob.digest)))) freed.set(blob.digest, blob.size);
    } else kept.add(blob.digest);
  }

  const bases = new Map<string, Array<{ segments: string[]; record: NameRecord; text: string }>>();
  for await (const segments of names.walk(['projects'])) {
    const [, project, kind] = segments;
    if (segments.length !== 4 || project === undefined) continue;
    if (kind === 'bases') {
      const found = await read<NameRecord>(segments);
      if (!found) continue;
      // not among the newest kept: the listing leaves it out, push does not see it
      if (!blobOfRecord(found.record)) {
        skip(segments);
        continue;
      }
      const list = bases.get(project) ?? [];
      list.push({ segments, ...found });
      bases.set(project, list);
      continue;
    }
    if (kind !== 'runs') continue;
    const found = await read<RunRecord>(segments);
    if (!found) continue;
    const { record } = found;
    // dated by when the origin stored it (its file), not by the `created` the pushing
    // machine's clock wrote in it
    const created = await names.mtimeMs(segments).catch((err: unknown) => {
      if (err instanceof NotFoundError) return Infinity; // gone since listed: not due
      throw err;
    });
    const blobs: Blobs = new Map();
    const named = [record.base, record.delta ?? undefined].filter((b) => b !== undefined).map(blobOfRecord);
    for (const blob of named) if (blob) blobs.set(blob.digest, blob.size);
    if (named.includes(undefined)) {
      // what it names whole stays: it may be the edited one's too
      skip(segments);
      for (const digest of blobs.keys()) kept.add(digest);
      continue;
    }
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
      const keep = i < keepBases || b.record.created >= cutoff || kept.has(b.record.digest);
      if (keep) kept.add(b.record.digest);
      else {
        due.push({ segments: b.segments, kind: 'bases', text: b.text });
        freed.set(b.record.digest, b.record.size);
      }
    });
  }
  return { due, kept, freed };
}
