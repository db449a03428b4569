// /cas/{algo}/{hex} and its tooltool alias /{algo}/{hex}.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { FleetError } from '../../errors.js';
import { checkWritePreconditions, etagOf, replyWithBlob } from '../../http/blob-reply.js';
import { ALGO_HEX_ROUTE, formatDigest, parseAliasDigest, parseDigest, type Digest } from '../../store/digest.js';
import { blobCacheControl, checkUploadHead, checkRead, isInternal, uploadRecord, visibilityOf, type OriginContext, type UploadRecord, type Visibility } from '../context.js';

interface DigestParams {
  algo: string;
  hex: string;
}

export async function casRoutes(app: FastifyInstance, ctx: OriginContext): Promise<void> {
  const get = (kind: string, parse: typeof parseDigest) => async (request: FastifyRequest<{ Params: DigestParams }>, reply: import('fastify').FastifyReply) => {
    const digest = parse(request.params.algo, request.params.hex);
    const internal = isInternal(ctx, digest);
    checkRead(ctx, request, internal);
    return replyWithBlob(request, reply, ctx.store, digest, {
      kind,
      ledger: ctx.ledger,
      cacheControl: blobCacheControl(ctx, internal),
      // The visibility it was first uploaded with, which an upload must ask again (assets/upload.ts).
      // nosniff: the bytes of an artifact a machine uploaded are a blob here too, never a page.
      extraHeaders: { 'x-fleetcache-visibility': internal ? 'internal' : 'public', 'x-content-type-options': 'nosniff' },
    });
  };
  app.route<{ Params: DigestParams }>({ method: ['GET', 'HEAD'], url: '/cas/:algo/:hex', config: { kind: 'cas' }, handler: get('cas', parseDigest) });
  // The tooltool alias: any query string (?region=…) is ignored by routing already.
  app.route<{ Params: DigestParams }>({ method: ['GET', 'HEAD'], url: ALGO_HEX_ROUTE, config: { kind: 'tooltool' }, handler: get('tooltool', parseAliasDigest) });

  /**
   * Uploads in flight of a digest not stored yet, and the visibility they all asked for:
   * one asking the other is refused while they run, and a failed one forgets the internal
   * mark only when it was the last.
   */
  const uploading = new Map<string, { visibility: Visibility; count: number }>();

  app.put<{ Params: DigestParams }>('/cas/:algo/:hex', { config: { kind: 'cas' } }, async (request, reply) => {
    ctx.auth.require(request);
    const expected = parseDigest(request.params.algo, request.params.hex);
    const visibility = visibilityOf(request);
    checkUploadHead(request, ctx.maxBlobSize);
    // Visibility is fixed at first upload (tooltool): otherwise anyone with a write token could
    // make a public asset internal, or believe they made an internal one public.
    const existed = await ctx.store.has(expected);
    if (existed) refuseOtherVisibility(ctx, expected, visibility);
    // If-Match / If-None-Match against the blob (its ETag is its digest), before its body is read.
    checkWritePreconditions(request, existed ? etagOf(expected) : undefined);
    const key = formatDigest(expected);
    const flight = existed ? undefined : (uploading.get(key) ?? { visibility, count: 0 });
    if (flight) {
      if (flight.visibility !== visibility) {
        throw new FleetError('FC_ERR_BAD_REQUEST', `${key} is being uploaded as ${flight.visibility} by another request; its visibility cannot be ${visibility}`, {
          details: { visibility: flight.visibility },
        });
      }
      flight.count++;
      uploading.set(key, flight);
    }
    let result;
    try {
      // A new internal asset is marked before its first byte is stored: never readable without a token.
      if (flight) await markForUpload(ctx, expected, visibility);
      result = await ctx.store.put(request.raw, { expected, maxSize: ctx.maxBlobSize });
    } catch (err) {
      if (flight?.visibility === 'internal') await forgetFailedMark(ctx, expected, () => flight.count === 1);
      throw err;
    } finally {
      if (flight && --flight.count === 0) uploading.delete(key);
    }
    ctx.ledger.bytesIn('cas', result.size);
    // exclusive: a prune's deleteIf of this record (retention.ts) reads and removes it with nothing written in between
    const uploaded = uploadRecord(formatDigest(result.digest));
    await ctx.names.exclusive(uploaded, () => ctx.names.put<UploadRecord>(uploaded, { created: Date.now() }));
    // A name may follow (a run manifest naming this delta): a prune running now keeps the blob,
    // and one that deleted it since the store found it makes this a retryable 503, not a 200.
    const named = [formatDigest(result.digest)];
    ctx.references.hold(named)();
    try {
      await ctx.references.confirm(ctx.store, named);
    } catch (err) {
      // No upload of a blob gone stands: its record would keep the same bytes stored again
      // under a name past that name's expiry, as an asset (retention.ts). Unless another
      // upload has stored them anew meanwhile.
      await ctx.names.exclusive(uploaded, async () => {
        if (!(await ctx.store.has(result.digest))) await ctx.names.delete(uploaded);
      });
      throw err;
    }
    if (!result.created && !existed) {
      // Stored meanwhile by another PUT: the same visibility, and a false If-None-Match is a 412 still.
      refuseOtherVisibility(ctx, expected, visibility);
      checkWritePreconditions(request, etagOf(expected));
    }
    return reply.code(result.created ? 201 : 200).header('cache-control', blobCacheControl(ctx, isInternal(ctx, result.digest))).send({ digest: formatDigest(result.digest), size: result.size });
  });
}

/**
 * Before the first byte of a new blob is stored, its mark says what the upload asked: a
 * public upload also clears a mark that an internal upload which never finished (a crash)
 * left behind. A blob stored meanwhile keeps its visibility, and a different ask is refused.
 */
async function markForUpload(ctx: OriginContext, digest: Digest, visibility: Visibility): Promise<void> {
  await ctx.names.exclusive(visibilityRecord(digest), async () => {
    if (await ctx.store.has(digest)) return refuseOtherVisibility(ctx, digest, visibility);
    if (storedVisibility(ctx, digest) !== visibility) await setInternal(ctx, digest, visibility === 'internal');
  });
}

/** A failed internal upload removes the mark, unless the blob got stored or `last()` says others still run. */
async function forgetFailedMark(ctx: OriginContext, digest: Digest, last: () => boolean): Promise<void> {
  await ctx.names.exclusive(visibilityRecord(digest), async () => {
    if (last() && isInternal(ctx, digest) && !(await ctx.store.has(digest))) await setInternal(ctx, digest, false);
  });
}

function storedVisibility(ctx: OriginContext, digest: Digest): Visibility {
  return isInternal(ctx, digest) ? 'internal' : 'public';
}

function refuseOtherVisibility(ctx: OriginContext, digest: Digest, wanted: Visibility): void {
  const stored = storedVisibility(ctx, digest);
  if (stored !== wanted) {
    throw new FleetError('FC_ERR_BAD_REQUEST', `${formatDigest(digest)} is stored as ${stored}; its visibility cannot change to ${wanted}`, {
      details: { visibility: stored },
    });
  }
}

function visibilityRecord(digest: Digest): string[] {
  return ['_visibility', digest.algo, digest.hex];
}

/** Records (or forgets) that `digest` is internal, on disk and in the set reads check. */
async function setInternal(ctx: OriginContext, digest: Digest, internal: boolean): Promise<void> {
  const record = visibilityRecord(digest);
  if (internal) {
    await ctx.names.put(record, { visibility: 'internal' });
    ctx.internal.add(formatDigest(digest));
  } else {
    ctx.internal.delete(formatDigest(digest));
    await ctx.names.delete(record);
  }
}

/**
 * Loads the set of internal digests at start. A mark is its file: one whose content a
 * crash damaged still marks its digest internal (never public by accident).
 */
export async function loadInternalSet(ctx: OriginContext): Promise<void> {
  for (const algo of ['sha256', 'sha512']) {
    for (const hex of await ctx.names.keys(['_visibility', algo])) ctx.internal.add(`${algo}:${hex}`);
  }
}
