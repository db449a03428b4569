// The blob a name points at until an upload replaces its record, which the next prune then
// frees (context.ts replacedRecord) unless something else names it by then. A record that does
// not read as one (truncated by a crash of a version that wrote records in place, hand-edited)
// is damage on the server's side: the upload replaces it all the same, as a PUT replaces what
// is there, rather than leave the name unwritable (each PUT of it a 400 or a 500), and says so
// in the log. Its blob is still freed when its text holds one whole digest field, which is the
// blob it named: a prune deletes a blob only when no name points at it then (retention.ts), so
// a digest read from damaged text cannot cost a blob in use. Text that names none leaves its
// blob to no prune; the log line says so, with the name.
import type { FastifyBaseLogger } from 'fastify';
import { errorMessage, NotFoundError } from '../errors.js';
import { isStoredDigest, parseDigestString } from '../store/digest.js';
import type { OriginContext } from './context.js';

export interface NamedBlob {
  /** "<algo>:<hex>", as a name record holds it. */
  readonly digest: string;
  readonly size: number;
}

/** A digest field as a name record is written (JSON.stringify), or spaced as by a hand. */
const DIGEST_FIELD = /"digest"\s*:\s*"([a-z0-9]+:[0-9a-f]+)"/g;

/** The blob a record read as JSON names; undefined when it does not as a name record does (a digest "<algo>:<hex>", a size). */
export function blobOfRecord(value: unknown): NamedBlob | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { digest, size } = value as { digest?: unknown; size?: unknown };
  if (typeof digest !== 'string' || !isStoredDigest(digest) || typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) return undefined;
  return { digest, size };
}

/** The digest a damaged record's text still names whole; undefined for none, or for several (no guess). */
function digestInText(text: string): string | undefined {
  const found = new Set([...text.matchAll(DIGEST_FIELD)].map((m) => m[1]!).filter(isStoredDigest));
  return found.size === 1 ? [...found][0] : undefined;
}

/**
 * The blob the record of `segments`, read as `text`, names now: called in the name's lock,
 * before the upload's record replaces it. A damaged record is logged, with the name and what
 * becomes of the blob it named.
 */
export async function replacedBlob(ctx: OriginContext, log: FastifyBaseLogger, segments: readonly string[], text: string): Promise<NamedBlob | undefined> {
  let value: unknown;
  let damage = 'not a name record (a digest "<algo>:<hex>" and a size)';
  try {
    value = JSON.parse(text);
  } catch (err) {
    damage = errorMessage(err);
  }
  const sound = blobOfRecord(value);
  if (sound) return sound;
  const name = segments.join('/');
  const file = ctx.names.fileOf(segments);
  const said = `the record of the name ${name}, ${file}, is damaged (${damage}); this upload replaces it`;
  const digest = digestInText(text);
  if (digest === undefined) {
    log.warn({ name, file }, `${said}. It names no blob that can be read: the blob it pointed at, if still stored, is freed by no prune`);
    return undefined;
  }
  const size = await ctx.store.stat(parseDigestString(digest)).then(
    (st) => st.size,
    (err: unknown) => {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    },
  );
  if (size === undefined) {
    log.warn({ name, file, digest }, `${said}. The blob it named, ${digest}, is not stored: nothing to free`);
    return undefined;
  }
  log.warn({ name, file, digest }, `${said}. The blob it named, ${digest} (read from its text), is freed by the next prune, unless something else names it`);
  return { digest, size };
}
