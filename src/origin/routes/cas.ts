// /cas/{algo}/{hex} and its tooltool alias /{algo}/{hex}.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { FleetError } from '../../errors.js';
import { checkWritePreconditions, etagOf, replyWithBlob } from '../../http/blob-reply.js';
import { ALGO_HEX_ROUTE, formatDigest, parseDigest, type Digest } from '../../store/digest.js';
import { blobCacheControl, checkDeclaredLength, checkRead, type OriginContext } from '../context.js';

type Visibility = 'public' | 'internal';

/**
 * X-Fleetcache-Visibility of an upload, tooltool's values exactly (its API takes no other
 * spelling); absent is public. GET and HEAD answer with the stored one in the same header.
 */
function visibilityOf(request: FastifyRequest): Visibility {
  const value = request.headers['x-fleetcache-visibility'];
  if (value === undefined || value === 'public' || value === 'internal') return value ?? 'public';
  throw new FleetError('FC_ERR_BAD_REQUEST', `X-Fleetcache-Visibility must be "public" or "internal", not ${JSON.stringify(value)}`);
}

interface DigestParams {
  algo: string;
  hex: string;
}

export async function casRoutes(app: FastifyInstance, ctx: OriginContext): Promise<void> {
  const get = (kind: string) => async (request: FastifyRequest<{ Params: DigestParams }>, reply: import('fastify').FastifyReply) => {
    const digest = parseDigest(request.params.algo, request.params.hex);
    checkRead(ctx, request, digest);
    return replyWithBlob(request, reply, ctx.store, digest, {
      kind,
      ledger: ctx.ledger,
      cacheControl: blobCacheControl(ctx, digest),
      // The visibility it was first uploaded with, which an upload must ask again (assets/upload.ts).
      extraHeaders: { 'x-fleetcache-visibility': storedVisibility(ctx, digest) },
    });
  };
  app.route<{ Params: DigestParams }>({ method: ['GET', 'HEAD'], url: '/cas/:algo/:hex', config: { kind: 'cas' }, handler: get('cas') });
  // The tooltool alias: any query string (?region=…) is ignored by routing already.
  app.route<{ Params: DigestParams }>({ method: ['GET', 'HEAD'], url: ALGO_HEX_ROUTE, config: { kind: 'tooltool' }, handler: get('tooltool') });

  app.put<{ Params: DigestParams }>('/cas/:algo/:hex', { config: { kind: 'cas' } }, async (request, reply) => {
    ctx.auth.require(request);
    const expected = parseDigest(request.params.algo, request.params.hex);
    const visibility = visibilityOf(request);
    checkDeclaredLength(request, ctx.maxBlobSize);
    // Visibility is fixed at first upload (tooltool): otherwise anyone with a write token could
    // make a public asset internal, or believe they made an internal one public.
    const existed = await ctx.store.has(expected);
    if (existed) refuseOtherVisibility(ctx, expected, visibility);
    // If-Match / If-None-Match against the blob (its ETag is its digest), before its body is read.
    checkWritePreconditions(request, existed ? etagOf(expected) : undefined);
    // A new internal asset is marked before its first byte is stored: never readable without a token.
    const marked = !existed && visibility === 'internal' && !ctx.internal.has(formatDigest(expected));
    if (marked) await setInternal(ctx, expected, true);
    let result;
    try {
      result = await ctx.store.put(request.raw, { expected, maxSize: ctx.maxBlobSize });
    } catch (err) {
      if (marked && !(await ctx.store.has(expected))) await setInternal(ctx, expected, false);
      throw err;
    }
    ctx.ledger.bytesIn('cas', result.size);
    if (!result.created && !existed) {
      // Stored meanwhile by another PUT: the same visibility, and a false If-None-Match is a 412 still.
      refuseOtherVisibility(ctx, expected, visibility);
      checkWritePreconditions(request, etagOf(expected));
    }
    return reply.code(result.created ? 201 : 200).header('cache-control', blobCacheControl(ctx, result.digest)).send({ digest: formatDigest(result.digest), size: result.size });
  });
}

function storedVisibility(ctx: OriginContext, digest: Digest): Visibility {
  return ctx.internal.has(formatDigest(digest)) ? 'internal' : 'public';
}

function refuseOtherVisibility(ctx: OriginContext, digest: Digest, wanted: Visibility): void {
  const stored = storedVisibility(ctx, digest);
  if (stored !== wanted) {
    throw new FleetError('FC_ERR_BAD_REQUEST', `${formatDigest(digest)} is stored as ${stored}; its visibility cannot change to ${wanted}`, {
      details: { visibility: stored },
    });
  }
}

/** Records (or forgets) that `digest` is internal, on disk and in the set reads check. */
async function setInternal(ctx: OriginContext, digest: Digest, internal: boolean): Promise<void> {
  const record = ['_visibility', digest.algo, digest.hex];
  if (internal) {
    await ctx.names.put(record, { visibility: 'internal' });
    ctx.internal.add(formatDigest(digest));
  } else {
    ctx.internal.delete(formatDigest(digest));
    await ctx.names.delete(record);
  }
}

/** Loads the set of internal digests at start. */
export async function loadInternalSet(ctx: OriginContext): Promise<void> {
  for (const algo of ['sha256', 'sha512']) {
    for (const [hex] of await ctx.names.list(['_visibility', algo])) ctx.internal.add(`${algo}:${hex}`);
  }
}
