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
  // What the request's token allows, 401/403 as a write would get them: a client checks its
  // token before it spends minutes on work only a write can use (a push packing a tree).
  app.get('/-/token', { config }, async (request, reply) => {
    reply.header('cache-control', 'no-store');
    return ctx.auth.granted(request);
  });
  // A prune now (?dry-run=1: what it would delete), by the configured retention; a writer's token.
  app.post('/-/prune', { config }, async (request) => {
    ctx.auth.require(request);
    if (!retention) throw new FleetError('FC_ERR_NOT_FOUND', 'no retention is configured (origin.yaml retention:)');
    const dryRun = dryRunOf(request.query);
    // a prune may outlast the idle timeout of the connection (it sends nothing meanwhile)
    request.raw.socket.setTimeout(0);
    const report = await retention.prune({ dryRun }).finally(() => request.raw.socket.setTimeout(request.server.server.timeout));
    request.log.info({ prune: report }, 'retention prune');
    return report;
  });
}

/**
 * `?dry-run` of a prune: absent, 0 or false runs it; present, 1 or true only reports. Any
 * other parameter or value is refused: a misspelt dry run must not delete.
 */
function dryRunOf(query: unknown): boolean {
  const params = Object.entries((query ?? {}) as Record<string, unknown>);
  const [name, value] = params[0] ?? [];
  if (params.length === 0) return false;
  if (params.length === 1 && name === 'dry-run' && typeof value === 'string' && ['', '1', 'true', '0', 'false'].includes(value)) return value !== '0' && value !== 'false';
  throw new FleetError('FC_ERR_BAD_REQUEST', 'POST /-/prune takes one parameter, dry-run (1, true or nothing for a dry run; 0 or false to prune)');
}
