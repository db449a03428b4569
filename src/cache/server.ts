// The regional cache as a fastify app: buildCacheServer(config) opens the disk store and
// returns the instance without listening (the CLI listens; tests use port 0).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import Fastify, { type FastifyInstance } from 'fastify';
import { NotFoundError } from '../errors.js';
import { answerUnavailableWhileClosing, baseServerOptions, buildOnDataDir, continueOnlyWhenAllowed, DEFAULT_MAX_HEADERS, malformedRequest, refuseMalformedRequests } from '../http/server-options.js';
import { clientIdleMs, DEFAULT_FILL_MEMORY, type CacheConfig } from './config.js';
import type { ClusterLink } from './cluster/link.js';
import { NotCachedError, type CacheContext, type Mirror } from './context.js';
import { DiskStore } from './disk-store.js';
import { answerEarly, takeResume } from './early-hits.js';
import { plainBlobGet, sendEarlyHit, serveSmallHit } from './fast-hit.js';
import { leadEarlyMiss, leadMiss } from './fast-miss.js';
import { fillMemoryBudget, fillMemoryInUse, setFillMemory } from './fill-progress.js';
import { Fills } from './fills.js';
import { UploadsInFlight } from './uploads-in-flight.js';
import { CacheMetrics } from './metrics.js';
import { registerMirrorRoutes } from './mirror.js';
import { registerNamespaceRoutes } from './namespace.js';
import { registerPutRoutes } from './put.js';
import { failureFields } from './serve.js';
import { loggedPath } from '../redact-url.js';
import { collectRoutes } from '../http/allowed-methods.js';
import { BEARER_CHALLENGE } from '../http/auth.js';
import { errorAnswer, isServerFault, requestError } from '../http/errors.js';
import { closeAfterUnreadBodies, closeUnreadBody } from '../http/unread-body.js';
import { countEarlyAnswers } from '../http/early-answers.js';
import { inPipelineOrder } from '../http/pipeline-order.js';
import { DEFAULT_CLIENT_HEADER_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS, HEAD_CHECK_INTERVAL_MS, limitConnections } from '../http/connection-limits.js';
import { closeFollowerPools, serveFillEvents } from './remote-fill.js';
import { Upstream } from './upstream.js';
import { registerDashboard } from '../ui/dashboard.js';

declare module 'fastify' {
  interface FastifyInstance {
    cache: CacheContext;
  }
}

interface CacheServerOptions {
  /** Set in a worker of a multi-process cache (see cluster/protocol.ts). */
  readonly link?: ClusterLink;
}

export async function buildCacheServer(config: CacheConfig, options: CacheServerOptions = {}): Promise<FastifyInstance> {
  // A worker's primary holds the data directory; a cache of one process holds it itself,
  // before the store opens (opening empties tmp/).
  if (options.link) return buildOnLockedDir(config, options.link);
  return buildOnDataDir(config.dataDir, () => buildOnLockedDir(config, undefined), (app) => app);
}

async function buildOnLockedDir(config: CacheConfig, link: ClusterLink | undefined): Promise<FastifyInstance> {
  let fast: CacheContext | undefined; // set once the context exists, before listening
  const app = Fastify({
    ...baseServerOptions(config.logLevel, 1024 * 1024, config.shutdownTimeoutMs),
    // The server fastify would create, with small hits and plain cold misses of blobs
    // answered before fastify (fast-hit.ts, fast-miss.ts). Once closing, fastify answers all.
    serverFactory: (handler) => {
      // Large bodies stream for minutes: no limit on a whole request, but a connection with
      // no traffic (a client that stopped reading holds a fill's file and buffers) is cut.
      // The limit is set per request, past the small hits: one answered whole from memory
      // holds nothing, and node re-arms a server-wide limit (a new timer) on every request.
      const idleMs = clientIdleMs(config);
      const answer = (req: IncomingMessage, res: ServerResponse): void => {
        // A cold miss the early path led and handed over (a large body, an error).
        const resume = takeResume(req);
        if (resume) {
          req.socket.setTimeout(idleMs);
          return resume(req, res);
        }
        // A malformed request goes to fastify, which refuses it (refuseMalformedRequests).
        const get = fast && server.listening && !malformedRequest(req, DEFAULT_MAX_HEADERS) ? plainBlobGet(req, fast.store) : undefined;
        if (get && serveSmallHit(fast!, get, res, false)) return;
        req.socket.setTimeout(idleMs);
        // A worker looks for another worker's copy once the miss path declined (a single
        // process knows its blobs from its index: the first look said all).
        if (get && (leadMiss(fast!, req, res, get, () => handler(req, res)) || (link && serveSmallHit(fast!, get, res, true)))) return;
        handler(req, res);
      };
      const server = createServer({ connectionsCheckingInterval: HEAD_CHECK_INTERVAL_MS }, (req, res) => inPipelineOrder(req, res, answer));
      server.requestTimeout = 0;
      server.keepAliveTimeout = 30_000;
      continueOnlyWhenAllowed(server);
      // Small hits and plain cold misses on a connection node has not taken yet are answered
      // on its socket. A worker also looks for another worker's copy once the miss path
      // declined, so that the first hit of such a blob does not hand the connection to node
      // for good.
      answerEarly(
        server,
        DEFAULT_MAX_HEADERS,
        (target, send) => fast !== undefined && sendEarlyHit(fast, target, send, false),
        (get, owed) => fast !== undefined && (leadEarlyMiss(fast, get, owed, handler) || (link !== undefined && sendEarlyHit(fast, get.target, owed.send, true))),
      );
      return server;
    },
  });
  // after answerEarly: a connection over the cap or late with its head is the same on both paths
  const clientHeaderTimeoutMs = config.clientHeaderTimeoutMs ?? DEFAULT_CLIENT_HEADER_TIMEOUT_MS;
  limitConnections(app.server, { clientHeaderTimeoutMs, maxConnections: config.maxConnections ?? DEFAULT_MAX_CONNECTIONS }, app.log);
  refuseMalformedRequests(app, DEFAULT_MAX_HEADERS);
  answerUnavailableWhileClosing(app);
  closeAfterUnreadBodies(app.server);
  setFillMemory(config.fillMemory ?? DEFAULT_FILL_MEMORY);
  const store = new DiskStore(config.dataDir, config.maxSize, app.log, link ? { peer: link } : { maxSizeSetting: config.maxSizeSetting });
  await store.open();
  const fills = new Fills(store, app.log, link?.peers, link ? () => link.leadingChanged() : undefined, config.unreadGraceMs);
  const { upstreamConnections: connections, privateRedirects } = config;
  const upstream = new Upstream('origin', config.upstream, config.timeouts, { connections, privateRedirects });
  const mirrors = new Map<string, Mirror>();
  for (const [name, m] of config.mirrors) mirrors.set(name, { upstream: new Upstream(name, m.url, m.timeouts, { external: true, connections, privateRedirects }), tooltool: m.tooltool });
  const inflight = (): number => (link ? link.store.inflight : fills.size);
  const metrics = new CacheMetrics(config.region, { inflight, lruBytes: () => store.bytes, lruObjects: () => store.count, maxSize: () => store.maxSize, evicted: () => store.evicted, refusing: () => store.isFull(), storageFailures: () => store.failures, fillsCut: () => fills.cut, fillMemory: fillMemoryInUse, fillMemoryLimit: fillMemoryBudget });
  if (link) {
    link.attach((id) => store.forget(id), () => fills.leading, () => metrics.tallies(), () => metrics.registry.getMetricsAsJSON());
    metrics.onChange(() => link.tallied());
  }
  countEarlyAnswers(app.server, (fe) => metrics.error(fe.code, fe.status));
  const uploads = new UploadsInFlight();
  const ctx: CacheContext = { store, fills, uploads, metrics, upstream, mirrors, log: app.log };
  app.decorate('cache', ctx);
  fast = ctx;

  app.setErrorHandler((err: unknown, req, reply) => {
    const fe = requestError(err);
    if (!(fe instanceof NotCachedError)) {
      metrics.error(fe.code, fe.status);
      if (isServerFault(fe)) req.log.error(failureFields(fe, req), 'request failed'); // req.log has the reqId
    }
    if (reply.raw.headersSent) return void reply.raw.destroy();
    closeUnreadBody(req.raw, reply); // an upload refused before its body was read is not read
    // An error is not the object: no cache in front keeps it (as the origin's errors say).
    if (fe.status === 401) void reply.header('www-authenticate', BEARER_CHALLENGE);
    void reply.code(fe.status).type('application/json').header('x-cache', 'MISS').header('cache-control', 'no-store').send(JSON.stringify(errorAnswer(fe, req.id)));
  });
  app.setNotFoundHandler((req) => {
    throw new NotFoundError(`no route for ${req.method} ${loggedPath(req.url)}`);
  });

  // Bodies are never buffered by a parser, on any route (the PUTs stream request.raw), so
  // that a body sent where it is refused (a 405) gets that answer, not a 415 or a 500.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, _payload, done) => done(null));
  const refuseOtherMethods = collectRoutes(app);
  // HEAD wherever GET is (RFC 9110 §9.1): fastify's own HEAD route for these small answers,
  // which runs the GET handler and sends its headers only (see baseServerOptions for blobs).
  const ops = { logLevel: 'silent', exposeHeadRoute: true } as const;
  app.get('/-/healthz', ops, () => ({ status: 'ok', role: 'cache', region: config.region })); // the origin's shape, plus its region
  app.get('/-/metrics', ops, async (_req, reply) => {
    if (!link) return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    const all = await link.metrics();
    return reply.type(all.contentType).send(all.text);
  });
  app.get('/-/stats', ops, async () => {
    // Asked first: in a worker, the store's figures below are the ones this answer brings.
    const everyWorker = link ? await link.stats() : undefined;
    return {
      region: config.region,
      startedAt: link?.startedAt ?? metrics.startedAt,
      ...metrics.stats(everyWorker),
      store: { bytes: store.bytes, objects: store.count, maxSize: store.maxSize, full: store.isFull(), evictedObjects: store.evicted.objects, evictedBytes: store.evicted.bytes },
      inflightFills: inflight(),
      // Several processes: workers that died while serving lost their last counts (the report marks its figures "≥").
      ...(link ? { workersLost: link.workersLost } : {}),
    };
  });

  registerNamespaceRoutes(app, ctx);
  registerMirrorRoutes(app, ctx);
  await app.register(async (scope) => registerPutRoutes(scope, ctx, clientHeaderTimeoutMs));
  await app.register(registerDashboard, { role: 'cache' });

  if (link) {
    serveFillEvents(app, ctx, link.socket);
    app.addHook('onClose', async () => link.flush());
  }
  refuseOtherMethods();

  app.addHook('onClose', async () => {
    await Promise.all([upstream.close(), closeFollowerPools(), ...[...mirrors.values()].map((m) => m.upstream.close())]);
    // The fills and uploads this close cut remove their temp files (a fill's claim and link
    // too) once they end: a cache worker exits as soon as it is closed (its IPC channel
    // closed), which left them on disk until the next start.
    await Promise.all([fills.drain(), uploads.drain()]);
  });
  return app;
}
