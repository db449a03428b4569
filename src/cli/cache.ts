// `fleetcache cache`: one regional cache. Flags override the YAML file.
import path from 'node:path';
import type { Command } from 'commander';
import { readTokenFile } from '../client/token.js';
import { UsageError } from '../errors.js';
import { loadCacheConfig, resolveCacheConfig, type CacheConfigFile } from '../cache/config.js';
import { buildCacheServer } from '../cache/server.js';
import { serveUntilSignal } from './listen.js';

interface CacheFlags {
  config?: string;
  listen?: string;
  upstream?: string;
  data?: string;
  maxSize?: string;
  region?: string;
  tokenFile?: string;
}

export function registerCache(program: Command): void {
  program
    .command('cache')
    .description('Run a regional cache: a disk-backed HTTP caching proxy in front of the origin and mirrors')
    .option('-c, --config <file>', 'YAML configuration (see config/cache-region-a.yaml)')
    .option('--listen <host:port>', 'address to listen on; port 0 picks a free one (default 127.0.0.1:8081)')
    .option('--upstream <url>', 'the origin, or a parent cache')
    .option('--data <dir>', 'data directory (default cache/region-<region>)')
    .option('--max-size <size>', 'disk budget, e.g. 50GiB (default 50GiB)')
    .option('--region <name>', 'region name (default "default")')
    .option('--token-file <file>', 'write token sent upstream on PUT when a client sends none')
    .addHelpText('after', '\nPrints "listening http://HOST:PORT" on stdout when ready; logs are JSON on stderr.\nStops cleanly on SIGINT or SIGTERM.')
    .action(async (flags: CacheFlags) => {
      // Fills fsync, open and rename on the libuv thread pool: 4 threads starve a busy cache.
      // Effective only before the pool's first use, which is why it is set this early.
      process.env.UV_THREADPOOL_SIZE ??= '16';
      const file: Partial<CacheConfigFile> = flags.config ? loadCacheConfig(flags.config) : {};
      const upstream = flags.upstream ?? file.upstream;
      if (!upstream) throw new UsageError('no upstream: give --upstream URL or "upstream:" in the --config file');
      const merged: CacheConfigFile = {
        ...file,
        region: flags.region ?? file.region ?? 'default',
        listen: flags.listen ?? file.listen ?? '127.0.0.1:8081',
        upstream,
        ...(flags.data ? { data: flags.data } : {}),
        ...(flags.maxSize ? { maxSize: flags.maxSize } : {}),
        ...(flags.tokenFile ? { tokenFile: flags.tokenFile } : {}),
      };
      // Relative paths in a config file are relative to the working directory, like flags.
      const tokenFile = merged.tokenFile ? path.resolve(merged.tokenFile) : undefined;
      const config = resolveCacheConfig(merged, process.cwd(), tokenFile ? readTokenFile(tokenFile) : undefined);
      const app = await buildCacheServer(config);
      app.log.info({ region: config.region, data: config.dataDir, upstream: config.upstream, maxSize: config.maxSize, objects: app.cache.store.count }, 'cache starting');
      await serveUntilSignal(app, merged.listen);
    });
}
