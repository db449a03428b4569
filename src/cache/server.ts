// The regional cache as a fastify app: buildCacheServer(config) opens the disk store and
// returns the instance without listening (the CLI listens; tests use port 0).
import Fastify, { type FastifyInstance } from 'fastify';
import { FleetError, NotFoundError, toFleetError } from '../errors.js';
import { baseServerOptions } from '../http/server-options.js';
import type { CacheConfig } from './config.js';
import type { CacheContext } from './context.js';
import { DiskStore } from './disk-store.js';
import { Fills } from './fill.js';
import { CacheMetrics } from './metrics.js';
import { registerMirrorRoutes } from './mirror.js';
import { registerNamespaceRoutes } from './namespace.js';
import { registerPutRoutes } from './put.js';
import { Upstream } from './upstream.js';
import { registerDashboard } from '../ui/dashboard.js';

declare module 'fastify' {
  interface FastifyInstance {
    cache: CacheContext;
  }
}

export async function buildCacheServer(config: CacheConfig): Promise<FastifyInstance> {
  const app = Fastify({
    ...baseServerOptions(config.logLevel, 1024 * 1024),
    // Large bodies stream for minutes; only an idle socket is cut.
    requestTimeout: 0,
    keepAliveTimeout: 30_000,
  });
  const store = new DiskStore(config.dataDir, config.maxSize, app.log);
  await store.open();
  const fills = new Fills(store, app.log);
  const upstream = new Upstream('origin', config.upstream, config.timeouts);
  const mirrors = new Map<string, Upstream>();
  for (const [name, m] of config.mirrors) mirrors.set(name, new Upstream(name, m.url, m.timeouts));
  const metrics = new CacheMetrics({ inflight: () => fills.size, lruBytes: () => store.bytes, lruObjects: () => store.count });
  const ctx: CacheContext = { store, fills, metrics, upstream, mirrors, log: app.log, ...(config.token ? { token: config.token } : {}) };
  app.decorate('cache', ctx);

  app.setErrorHandler((err: unknown, req, reply) => {
    const fe = err instanceof FleetError ? err
      : (err as { statusCode?: number }).statusCode === 400 ? new FleetError('FC_ERR_BAD_REQUEST', (err as Error).message)
      : toFleetError(err);
    if (fe.status >= 500) req.log.error({ err: fe.message, code: fe.code }, 'request failed');
    if (reply.raw.headersSent) return void reply.raw.destroy();
    void reply.code(fe.status).type('application/json').header('x-cache', 'MISS').send(JSON.stringify(fe.toJSON()));
  });
  app.setNotFoundHandler((req) => {
    throw new NotFoundError(`no route for ${req.method} ${req.url.split('?')[0]}`);
  });

  app.get('/-/healthz', { logLevel: 'silent' }, () => ({ ok: true, region: config.region }));
  app.get('/-/metrics', { logLevel: 'silent' }, async (_req, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  app.get('/-/stats', { logLevel: 'silent' }, () => ({
    region: config.region,
    ...metrics.stats(),
    store: { bytes: store.bytes, objects: store.count, maxSize: store.maxSize, full: store.isFull() },
    inflightFills: fills.size,
  }));

  registerNamespaceRoutes(app, ctx);
  registerMirrorRoutes(app, ctx);
  await app.register(async (scope) => registerPutRoutes(scope, ctx));
  await app.register(registerDashboard, { role: 'cache' });

  app.addHook('onClose', async () => {
    await Promise.all([upstream.close(), ...[...mirrors.values()].map((m) => m.close())]);
  });
  return app;
}
