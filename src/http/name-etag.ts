// The ETag of a named blob (an artifact, a base): the blob's digest, `"sha256:<hex>"`, and
// when the name has a Content-Type or Content-Disposition of its own, a hash of them after
// a "+": a name re-uploaded with the same bytes but other fields changes its ETag, so a
// cache's revalidation gets the new answer, not a 304 that leaves it the old fields (a 304
// that lacks a field cannot say it was removed). The digest stays readable in it: a cache
// hashes its copy against it (namespace.ts).
import { createHash } from 'node:crypto';
import { parseDigest, type Digest } from '../store/digest.js';

/** The header fields of a name that its ETag covers besides its bytes. */
interface NameFields {
  readonly contentType?: string;
  readonly contentDisposition?: string;
}

export function nameEtag(digest: string, fields: NameFields): string {
  if (fields.contentType === undefined && fields.contentDisposition === undefined) return `"${digest}"`;
  const hash = createHash('sha256').update(JSON.stringify([fields.contentType ?? null, fields.contentDisposition ?? null])).digest('hex');
  return `"${digest}+${hash.slice(0, 16)}"`;
}

/** The digest a name's ETag states its bytes have, if it states one. */
export function etagDigest(etag: string | undefined): Digest | undefined {
  const m = /^"sha256:([0-9a-f]{64})(?:\+[0-9a-f]{16})?"$/.exec(etag ?? '');
  return m ? parseDigest('sha256', m[1]!) : undefined;
}
