// /cas/{algo}/{hex} and its tooltool alias /{algo}/{hex}.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { replyWithBlob } from '../../http/blob-reply.js';
import { formatDigest, parseDigest } from '../../store/digest.js';
import { checkDeclaredLength, checkRead, type OriginContext } from '../context.js';

interface DigestParams {
  algo: string;
  hex: string;
}

const INTERNAL_CACHE_CONTROL = 'private, max-age=31536000, immutable';

export async function casRoutes(app: FastifyInstance, ctx: OriginContext): Promise<void> {
  const get = (kind: string) => async (request: FastifyRequest<{ Params: DigestParams }>, reply: import('fastify').FastifyReply) => {
    const digest = parseDigest(request.params.algo, request.params.hex);
    checkRead(ctx, request, digest);
    const internal = ctx.internal.has(formatDigest(digest));
    return replyWithBlob(request, reply, ctx.store, digest, {
      kind,
      ledger: ctx.ledger,
      cacheControl: internal ? INTERNAL_CACHE_CONTROL : undefined,
    });
  };
  app.route<{ Params: DigestParams }>({ method: ['GET', 'HEAD'], url: '/cas/:algo/:hex', config: { kind: 'cas' }, handler: get('cas') });
  // The tooltool alias: any query string (?region=…) is ignored by routing already.
  app.route<{ Params: DigestParams }>({ method: ['GET', 'HEAD'], url: '/:algo(^sha(?:256|512)$)/:hex', config: { kind: 'tooltool' }, handler: get('tooltool') });

  app.put<{ Params: DigestParams }>('/cas/:algo/:hex', { config: { kind: 'cas' } }, async (request, reply) => {
    ctx.auth.require(request);
    const expected = parseDigest(request.params.algo, request.params.hex);
    checkDeclaredLength(request, ctx.maxBlobSize);
    const result = await ctx.store.put(request.raw, { expected, maxSize: ctx.maxBlobSize });
    ctx.ledger.bytesIn('cas', result.size);
    if (request.headers['x-fleetcache-visibility'] === 'internal') {
      const key = formatDigest(result.digest);
      await ctx.names.put(['_visibility', result.digest.algo, result.digest.hex], { visibility: 'internal' });
      ctx.internal.add(key);
    }
    return reply.code(result.created ? 201 : 200).send({ digest: formatDigest(result.digest), size: result.size });
  });
}

/** Loads the set of internal digests at start. */
export async function loadInternalSet(ctx: OriginContext): Promise<void> {
  for (const algo of ['sha256', 'sha512']) {
    for (const [hex] of await ctx.names.list(['_visibility', algo])) ctx.internal.add(`${algo}:${hex}`);
  }
}
