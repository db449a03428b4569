// fastify's pluginTimeout bounds close hooks as well as plugin starts: a stopping server's
// drain (a preClose hook, cli/listen.ts) longer than it made close() fail with
// AVV_ERR_READY_TIMEOUT, an uncaught error, instead of cutting at the shutdown timeout.
import { Readable } from 'node:stream';
import Fastify from 'fastify';
import t from 'tap';
import { Agent, request } from 'undici';
import { baseServerOptions, DEFAULT_SHUTDOWN_TIMEOUT_MS } from '../../src/http/server-options.js';
import { drainLimit, serveUntilSignal } from '../../src/cli/listen.js';
import { eventually } from '../helpers/wait.js';
import { join } from 'node:path';
import { loadConfigFile } from '../../src/config/load.js';
import { originOptionsFrom } from '../../src/cli/origin.js';
import { OriginConfigSchema } from '../../src/origin/config.js';
import { buildOriginServer } from '../../src/origin/server.js';
import { buildCacheServer } from '../../src/cache/server.js';
import { DEFAULT_MAX_SIZE, DEFAULT_TIMEOUTS } from '../../src/cache/config.js';

t.test('a server is built for the drains it will be asked for', async (t) => {
  for (const ms of [0, 1_000, DEFAULT_SHUTDOWN_TIMEOUT_MS, 60_000, 600_000]) {
    const app = Fastify(baseServerOptions(false, 1024, ms));
    t.ok(app.initialConfig.pluginTimeout! > ms, `shutdown ${ms} ms: pluginTimeout ${app.initialConfig.pluginTimeout} ms`);
    t.equal(drainLimit(app, ms), ms, `shutdown ${ms} ms: the whole drain fits`);
    await app.close();
  }
  const app = Fastify(baseServerOptions(false, 1024));
  t.equal(drainLimit(app, DEFAULT_SHUTDOWN_TIMEOUT_MS), DEFAULT_SHUTDOWN_TIMEOUT_MS, 'the default shutdown timeout fits by default');
  await app.close();
});

t.test('a drain longer than the server was built for is cut in time, and close succeeds', async (t) => {
  // Built for less than it is asked: the drain is cut before the pluginTimeout bound, not failed by it.
  const app = Fastify({ ...baseServerOptions(false, 1024), pluginTimeout: 2_500 });
  app.get('/slow', (_req, reply) => reply.send(new Readable({ read() { setTimeout(() => this.push(Buffer.alloc(64 * 1024)), 5); } })));
  const served = serveUntilSignal(app, '127.0.0.1:0', { announce: false, shutdownTimeoutMs: 5_000 });
  await eventually('the server listens', () => app.server.listening);
  const { port } = app.server.address() as { port: number };
  const dispatcher = new Agent();
  t.teardown(() => dispatcher.destroy());
  const res = await request(`http://127.0.0.1:${port}/slow`, { dispatcher });
  res.body.pause();
  const t0 = Date.now();
  process.emit('SIGTERM', 'SIGTERM');
  await served; // rejected, or an unhandled AVV_ERR_READY_TIMEOUT, without the limit
  const took = Date.now() - t0;
  t.ok(took >= 400 && took < 2_500, `cut after the limit the server allows (${took} ms), before pluginTimeout`);
  t.equal(app.server.listening, false, 'closed');
  await t.rejects(res.body.arrayBuffer(), 'the transfer in flight is cut, not ended clean');
});

t.test('a close that fails ends serveUntilSignal with its error, not an unhandled rejection', async (t) => {
  const app = Fastify(baseServerOptions(false, 1024));
  app.addHook('onClose', async () => {
    throw new Error('a close hook failed');
  });
  const before = process.listenerCount('SIGTERM');
  const served = serveUntilSignal(app, '127.0.0.1:0', { announce: false });
  await eventually('the server listens', () => app.server.listening);
  process.emit('SIGTERM', 'SIGTERM');
  await t.rejects(served, /a close hook failed/);
  t.equal(app.server.listening, false, 'closed');
  t.equal(process.listenerCount('SIGTERM'), before, 'its signal handlers removed');
});

t.test('an origin configured for a long shutdownTimeout is built for it (the whole drain fits)', async (t) => {
  const dir = t.testdir({ 'origin.yaml': 'listen: 127.0.0.1:0\ndata: data\nshutdownTimeout: 45s\n', token: `${'x'.repeat(32)}\n` });
  const config = loadConfigFile(OriginConfigSchema, join(dir, 'origin.yaml'));
  const { options } = originOptionsFrom(config, { data: join(dir, 'data'), tokenFile: join(dir, 'token') });
  t.equal(options.shutdownTimeoutMs, 45_000);
  const app = await buildOriginServer({ ...options, logLevel: false });
  t.teardown(() => app.close());
  t.equal(drainLimit(app, 45_000), 45_000, `pluginTimeout ${app.initialConfig.pluginTimeout} ms`);
});

t.test('a cache configured for a long shutdownTimeout is built for it', async (t) => {
  const dir = t.testdir();
  const app = await buildCacheServer({ region: 'r', upstream: 'http://127.0.0.1:9', dataDir: join(dir, 'data'), maxSize: DEFAULT_MAX_SIZE, timeouts: DEFAULT_TIMEOUTS, mirrors: new Map(), logLevel: 'silent', shutdownTimeoutMs: 45_000 });
  t.teardown(() => app.close());
  t.equal(drainLimit(app, 45_000), 45_000, `pluginTimeout ${app.initialConfig.pluginTimeout} ms`);
});
