// `fleetcache cache`: one regional cache. Flags override the YAML file.
import cluster from 'node:cluster';
import type { Command } from 'commander';
import { toFleetError, UsageError } from '../errors.js';
import type { CacheConfig, CacheConfigFile } from '../cache/config.js';
import type { probeUpstream } from '../cache/upstream.js';
import { readWorkerEnv } from '../cache/cluster/protocol.js';
import { decimalWhole } from './decimal-flag.js';
import { SERVER_HELP } from './server-help.js';

function parseWorkers(text: string, maxWorkers: number): number | 'auto' {
  if (text === 'auto') return 'auto';
  const n = decimalWhole(text);
  if (n === undefined || n < 1 || n > maxWorkers) throw new UsageError(`--workers: expected a number from 1 to ${maxWorkers} in decimal digits, or "auto", got "${text}"`);
  return n;
}

interface CacheFlags {
  config?: string;
  listen?: string;
  upstream?: string;
  data?: string;
  maxSize?: string;
  fillMemory?: string;
  region?: string;
  workers?: string;
}

/**
 * Starts the probe of the upstream (probeUpstream: a warning when it does not answer), in
 * the one process that speaks for the cache; the function returned ends it as the cache stops.
 */
async function startUpstreamProbe(config: CacheConfig, log: Parameters<typeof probeUpstream>[2]): Promise<() => void> {
  const stopping = new AbortController();
  const { probeUpstream } = await import('../cache/upstream.js');
  void probeUpstream(config.upstream, config.timeouts.connectMs + config.timeouts.headersMs, log, stopping.signal);
  return () => stopping.abort();
}

export function registerCache(program: Command): void {
  program
    .command('cache')
    .description('Run a regional cache: a disk-backed HTTP caching proxy in front of the origin and mirrors')
    .option('-c, --config <file>', 'YAML configuration (see config/cache-region-a.yaml)')
    .option('--listen <host:port>', 'address to listen on; port 0 picks a free one (default 127.0.0.1:8081)')
    .option('--upstream <url>', 'the origin, or a parent cache')
    .option('--data <dir>', 'data directory (default cache/region-<region>)')
    .option('--max-size <size>', 'disk budget: what the objects\' files take, in whole blocks, e.g. 50GiB (default 50GiB)')
    .option('--fill-memory <size>', 'memory per server process for the last bytes of fills in flight (default 1GiB)')
    .option('--region <name>', 'region name (default "default")')
    .option('--workers <n>', 'server processes sharing the port and the data: a number or "auto" (one per CPU; default 1)')
    .addHelpText('after', SERVER_HELP)
    .action(async (flags: CacheFlags) => {
      // Fills fsync, open and rename on the libuv thread pool: 4 threads starve a busy cache.
      // The pool starts at Node's first file read (its module loader's, before any code here
      // runs), so this reaches only the workers a primary forks: a cache of one process takes
      // the size from its environment (deploy/systemd/fleetcache-cache@.service sets it).
      process.env.UV_THREADPOOL_SIZE ??= '16';
      // the configuration's parser, the server and the cluster's parts load once the command
      // runs, not for --help
      const [{ checkFlags }, { cacheConfigSchema, MAX_WORKERS, maxSizeSetting, resolveCacheConfig, startupFields }, { createLogger }, { serverLogLevel }] = await Promise.all([
        import('../config/validate.js'),
        import('../cache/config.js'),
        import('../log.js'),
        import('../http/server-logging.js'),
      ]);
      // the YAML parser loads for a --config file only: a start from flags alone has none to read
      const fromFile = flags.config ? (await import('../cache/config-file.js')).readCacheConfigFile(flags.config, flags.upstream !== undefined) : undefined;
      const file: Partial<CacheConfigFile> = fromFile?.settings ?? {};
      checkFlags(cacheConfigSchema, {
        listen: ['--listen', flags.listen], upstream: ['--upstream', flags.upstream], data: ['--data', flags.data],
        maxSize: ['--max-size', flags.maxSize], fillMemory: ['--fill-memory', flags.fillMemory], region: ['--region', flags.region],
      });
      const upstream = flags.upstream ?? file.upstream;
      if (!upstream) throw new UsageError('no upstream: give --upstream URL or "upstream:" in the --config file');
      const merged: CacheConfigFile = {
        ...file,
        region: flags.region ?? file.region ?? 'default',
        listen: flags.listen ?? file.listen ?? '127.0.0.1:8081',
        upstream,
        ...(flags.data ? { data: flags.data } : {}),
        ...(flags.maxSize ? { maxSize: flags.maxSize } : {}),
        ...(flags.fillMemory ? { fillMemory: flags.fillMemory } : {}),
        ...(flags.workers !== undefined ? { workers: parseWorkers(flags.workers, MAX_WORKERS) } : {}),
      };
      const setting = maxSizeSetting(flags.maxSize, file, fromFile?.placeOf);
      const config: CacheConfig = { ...resolveCacheConfig(merged, process.cwd()), ...(setting ? { maxSizeSetting: setting } : {}) };
      const workers = config.workers ?? 1;
      if (workers > 1 && cluster.isPrimary) {
        // the primary serves nothing: the server (fastify, the routes, the fills) loads in the workers only
        const { runCachePrimary } = await import('../cache/cluster/primary.js');
        const log = createLogger(serverLogLevel(config.logLevel));
        log.info({ ...startupFields(config), workers }, 'cache starting');
        const primary = await runCachePrimary(config, workers, log, merged.listen);
        // A worker that cannot start stops the cache, with its error, once every worker is gone.
        const url = await primary.url.catch(async (err: unknown) => {
          await primary.stopped;
          throw err;
        });
        if (url !== undefined) process.stdout.write(`listening ${url}\n`);
        const endProbe = await startUpstreamProbe(config, log);
        return primary.stopped.finally(endProbe);
      }
      const [{ useTempOrigin }, { buildCacheServer }, { serveUntilSignal }, { ClusterLink }] = await Promise.all([
        import('../cache/disk-store.js'),
        import('../cache/server.js'),
        import('./listen.js'),
        import('../cache/cluster/link.js'),
      ]);
      const env = cluster.isWorker ? readWorkerEnv() : undefined;
      if (env?.tempOrigin) useTempOrigin(env.tempOrigin);
      const link = env ? new ClusterLink(env) : undefined;
      // A worker whose primary is gone (killed) needs nothing here: node's cluster ends it
      // (its own 'disconnect' listener, there before this code loads), and a worker that ran
      // on would be handed no connection: the primary holds the port (test/cache/cluster-startup.test.ts).
      try {
        const app = await buildCacheServer(config, link ? { link } : {});
        if (!link) {
          app.log.info({ ...startupFields(config), objects: app.cache.store.count }, 'cache starting');
          const endProbe = await startUpstreamProbe(config, app.log);
          app.addHook('onClose', async () => endProbe());
        }
        // Stopping, a worker also waits for the fills it leads: other workers' clients may follow them.
        await serveUntilSignal(app, env && link ? { path: env.http, serving: () => link.serve(app.server) } : merged.listen, {
          settle: () => app.cache.fills.drain(),
          ...(config.shutdownTimeoutMs === undefined ? {} : { shutdownTimeoutMs: config.shutdownTimeoutMs }),
        });
      } catch (err) {
        // A worker that cannot start tells its primary, which stops the cache (this worker too).
        if (link && process.connected) {
          const fe = toFleetError(err);
          link.failed(fe.code, fe.message);
        }
        throw err;
      }
      if (link && process.connected) {
        // The IPC channel keeps a worker's event loop alive: closing it lets the process end.
        process.disconnect();
      }
    });
}
