// Health, Prometheus metrics and JSON figures.
import type { FastifyInstance } from 'fastify';
import type { OriginContext } from '../context.js';

export async function opsRoutes(app: FastifyInstance, ctx: OriginContext): Promise<void> {
  const config = { kind: 'ops' };
  app.get('/-/healthz', { logLevel: 'silent', config }, async () => ({ status: 'ok', role: 'origin' }));
  app.get('/-/metrics', { logLevel: 'silent', config }, async (_req, reply) =>
    reply.type(ctx.ledger.registry.contentType).send(await ctx.ledger.registry.metrics()),
  );
  app.get('/-/stats', { logLevel: 'silent', config }, async () => ctx.ledger.snapshot());
}
