// Health, Prometheus metrics and JSON figures.
import type { FastifyInstance } from 'fastify';
import { FleetError } from '../../errors.js';
import type { OriginContext } from '../context.js';
import type { Retention } from '../retention.js';

export async function opsRoutes(app: FastifyInstance, ctx: OriginContext, retention?: Retention): Promise<void> {
  const config = { kind: 'ops' };
  app.get('/-/healthz', { logLevel: 'silent', config }, async () => ({ status: 'ok', role: 'origin' }));
  app.get('/-/metrics', { logLevel: 'silent', config }, async (_req, reply) =>
    reply.type(ctx.ledger.registry.contentType).send(await ctx.ledger.registry.metrics()),
  );
  app.get('/-/stats', { logLevel: 'silent', config }, async () => ctx.ledger.snapshot());
  // A prune now (?dry-run=1: what it would delete), by the configured retention; a writer's token.
  app.post<{ Querystring: { 'dry-run'?: string } }>('/-/prune', { config }, async (request) => {
    ctx.auth.require(request);
    if (!retention) throw new FleetError('FC_ERR_NOT_FOUND', 'no retention is configured (origin.yaml retention:)');
    const dryRun = ['1', 'true', ''].includes(request.query['dry-run'] ?? 'no');
    const report = await retention.prune({ dryRun });
    request.log.info({ prune: report }, 'retention prune');
    return report;
  });
}
