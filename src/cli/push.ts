// `fleetcache push DIR --project NAME --origin URL`: upload a project run as a delta.
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { resolveToken } from '../client/token.js';
import { formatBytes, parseSizeFlag } from '../config/units.js';
import { DEFAULT_COMPRESSION, isCompression } from '../delta/compress.js';
import { UsageError } from '../errors.js';
import { DEFAULT_BASE_CACHE_SIZE, prunedLine } from '../project-upload/base-cache.js';
import { parseLevel } from './delta.js';
import { DEFAULT_LEVEL_HELP } from '../delta/xdelta.js';
import { requireInput } from '../path-checks.js';
import { transferBars } from './progress.js';
import { requireBaseUrl } from './url-flags.js';
import { repeatable } from './repeatable.js';
import { reportSkipped, rulesFrom, withRuleOptions, type RuleFlags } from './pack.js';

function defaultBaseCache(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'fleetcache', 'bases');
}

interface PushFlags extends RuleFlags {
  project: string;
  origin: string;
  run?: string;
  tokenFile?: string;
  baseCache: string;
  cache: string[];
  baseCacheSize: string;
  compression: string;
  level?: string;
  repack?: string;
}

export function registerPush(program: Command): void {
  withRuleOptions(
    program
      .command('push')
      .description('Pack DIR and upload it as a delta against a base the origin has (prints run id and bytes)')
      .argument('<dir>', 'project root')
      .requiredOption('--project <name>', 'project name')
      .requiredOption('--origin <url>', 'origin base URL')
      .option('--run <id>', 'run id (default: timestamp and random suffix)')
      .option('--token-file <file>', 'write token (default: $FLEETCACHE_TOKEN)')
      .option('--base-cache <dir>', 'local copies of the bases, by digest', defaultBaseCache())
      .addOption(repeatable('--cache <url>', "a region's cache (the one its machines pull through), one per region; repeatable: a base a cache lacks counts its compressed size against a delta made with it", 'none: bases ranked by their delta alone'))
      .option('--base-cache-size <size>', 'bound of the base cache: the least recently used bases past it are removed after the push', DEFAULT_BASE_CACHE_SIZE)
      .option('--compression <c>', 'delta compression: none, gzip or brotli', DEFAULT_COMPRESSION)
      .option('--level <n>', DEFAULT_LEVEL_HELP)
      .option('--repack <script>', "spread's repack script: packed tar on fd 3, tar to upload on fd 4"),
  ).action(async (dir: string, flags: PushFlags) => {
    if (!isCompression(flags.compression)) throw new UsageError(`--compression must be none, gzip or brotli, got "${flags.compression}"`);
    const level = parseLevel(flags.level);
    requireBaseUrl('--origin', flags.origin);
    requireBaseUrl('--cache', ...flags.cache);
    await requireInput(dir, 'directory', 'project directory');
    const token = resolveToken(flags.tokenFile);
    const { pushProject, unusableBaseLine } = await import('../project-upload/push.js'); // not loaded for --help
    const bars = transferBars();
    const result = await pushProject({
      dir,
      project: flags.project,
      origin: flags.origin,
      baseCache: flags.baseCache,
      regionCaches: flags.cache,
      baseCacheSize: parseSizeFlag('--base-cache-size', flags.baseCacheSize),
      rules: rulesFrom(flags, dir),
      compression: flags.compression,
      ...(level === undefined ? {} : { level }),
      ...(token ? { token } : {}),
      ...(flags.tokenFile ? { secretFiles: [flags.tokenFile] } : {}),
      ...(flags.run ? { run: flags.run } : {}),
      ...(flags.repack ? { repack: flags.repack } : {}),
      ...(bars.progress ? { progress: bars.progress } : {}),
    }).finally(bars.stop);
    const m = result.manifest;
    const how = m.delta ? `delta against base ${m.base.id}` : result.rebased ? `new base ${m.base.id}` : `same as base ${m.base.id}`;
    process.stdout.write(
      `run\t${result.run}\n` +
        `uploaded\t${how}\n` +
        `sent\t${result.bytesSent}\t${formatBytes(result.bytesSent)}\n` +
        `full upload\t${result.fullUploadBytes}\t${formatBytes(result.fullUploadBytes)}\n` +
        `received\t${result.bytesReceived}\t${formatBytes(result.bytesReceived)}\n`,
    );
    reportSkipped(result.skipped);
    for (const base of result.unusableBases) process.stderr.write(`fleetcache: ${unusableBaseLine(base)}\n`);
    if (result.pruned.removed > 0) process.stderr.write(`fleetcache: ${prunedLine(result.pruned, flags.baseCache)}\n`);
  });
}
