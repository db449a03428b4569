// The embedded default: with no fleet configuration, `fleetcache run` (and the demo)
// start an origin and one cache per region in this process, on loopback ports, with
// their data under the run's data directory (run: <project>/.fleetcache or --data; the
// demo: cache/). Nothing listens beyond 127.0.0.1.
import { existsSync, rmSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildCacheServer } from '../cache/server.js';
import { DEFAULT_TIMEOUTS } from '../cache/config.js';
import { resolveOriginTokens } from '../cli/origin.js';
import { buildOrigin } from '../origin/server.js';
import { parseAddress } from '../backends/endpoint.js';
import type { LocalOptions } from '../backends/local.js';
import type { SshOptions } from '../backends/ssh-options.js';
import { ConfigError, FleetError } from '../errors.js';
import type { Backend } from '../spread/index.js';
import type { FleetConfig } from './fleet.js';

const LOOPBACK = /^(?:127(?:\.\d{1,3}){3}|localhost|::1)$/;
const GIVE_A_FLEET =
  'Give a fleet configuration whose origin and region caches the machines can reach: a `fleetcache:` key in spread.yaml or --fleet FILE (example: config/fleet.yaml).';

/** The embedded servers listen on 127.0.0.1: only machines on this host can pull from them. */
export function checkEmbeddedReach(backend: string, type: string, address: string): void {
  const host = parseAddress(address)?.host ?? address;
  if (LOOPBACK.test(host)) return;
  throw new ConfigError(
    `backend ${backend} (${type}) has a machine at ${address}, but without a fleet configuration the runner's own origin and cache ` +
      `listen on 127.0.0.1 only, which that machine cannot reach: every pull would fail. ${GIVE_A_FLEET}`,
  );
}

/**
 * Before anything starts: the ssh hosts of these backends, and local machines in a network
 * namespace (adhoc addresses are checked as they are allocated).
 */
export function checkEmbeddedBackends(backends: Iterable<Backend>, systems: ReadonlySet<string>): void {
  for (const b of backends) {
    const netns = b.type === 'local' ? (b.options as LocalOptions).netns : undefined;
    if (netns !== undefined) {
      throw new ConfigError(
        `backend ${b.name} (local) runs its machines in network namespace ${netns}, but without a fleet configuration the runner's own ` +
          `origin and cache listen on this host's 127.0.0.1, which a namespace does not share (it has a loopback of its own): every pull would fail. ${GIVE_A_FLEET}`,
      );
    }
    if (b.type !== 'ssh') continue;
    for (const h of (b.options as Partial<SshOptions>).hosts ?? []) {
      if (!h.systems || h.systems.some((s) => systems.has(`${b.name}:${s}`))) checkEmbeddedReach(b.name, b.type, h.address);
    }
  }
}

export interface EmbeddedFleet {
  readonly fleet: FleetConfig & { origin: string };
  readonly token: string;
  /** Each server by name ("origin", "cache:<region>") for stats and for tests that stop one. */
  readonly servers: ReadonlyMap<string, FastifyInstance>;
  close(): Promise<void>;
}

async function listenLoopback(app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  return `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
}

/**
 * What the embedded origin keeps: the runs, artifacts and bases of the last two weeks (and
 * the newest bases). Its data lies in the project (or --data); without this, every run's
 * project, artifacts and copies in the caches stayed there for ever. A run pruned at its
 * start, then hourly: the embedded origin lives only while its run does.
 */
const EMBEDDED_RETENTION = { maxAgeMs: 14 * 24 * 3600_000, keepBases: 3, intervalMs: 3600_000, firstAfterMs: 0 };

/** Each embedded cache's size limit: copies of what the embedded origin holds, on the same disk. */
const EMBEDDED_CACHE_SIZE = 10 * 2 ** 30;

/**
 * The embedded origin and caches, their data under `dataRoot`. Another run of the same
 * project may hold that data (spread runs two at once: `spread google:` beside `spread
 * qemu:`): this run's servers then keep theirs in a directory of their own under `dataRoot`,
 * removed when they close (its project goes up whole: no base there), and `note` says so.
 */
export async function startEmbeddedFleet(dataRoot: string, regions: readonly string[] = ['local'], logLevel = 'warn', note?: (line: string) => void): Promise<EmbeddedFleet> {
  try {
    return await startEmbeddedIn(dataRoot, regions, logLevel);
  } catch (err) {
    if (!(err instanceof FleetError) || err.code !== 'FC_ERR_DIR_IN_USE') throw err;
    const own = await mkdtemp(join(dataRoot, 'embedded-'));
    const holder = err.details?.pid;
    note?.(`The embedded servers' data in ${dataRoot} is in use by another run${typeof holder === 'number' ? ` (pid ${holder})` : ''}: this run keeps its own in ${own} until it ends.`);
    // Also when the run exits at once (a second Ctrl-C): synchronous, as 'exit' handlers are.
    const removeAtExit = (): void => rmSync(own, { recursive: true, force: true });
    process.once('exit', removeAtExit);
    const removeOwn = async (): Promise<void> => {
      process.off('exit', removeAtExit);
      await rm(own, { recursive: true, force: true });
    };
    const fleet = await startEmbeddedIn(own, regions, logLevel).catch(async (e: unknown) => {
      await removeOwn();
      throw e;
    });
    return { ...fleet, close: () => fleet.close().finally(removeOwn) };
  }
}

async function startEmbeddedIn(dataRoot: string, regions: readonly string[], logLevel: string): Promise<EmbeddedFleet> {
  const originDir = join(dataRoot, 'origin');
  // The user's alone (internal assets, artifacts, its token), as a served origin's data is
  // its service user's (cli/origin.ts restrictCreatedFiles): files made with the user's umask
  // are out of other users' reach through it.
  await mkdir(originDir, { recursive: true, mode: 0o700 });
  await chmod(originDir, 0o700);
  // its own, in its data directory: FLEETCACHE_TOKEN in the user's shell is for a real origin
  const { tokens } = resolveOriginTokens(undefined, originDir, false);
  const servers = new Map<string, FastifyInstance>();
  const close = async () => {
    // caches first, so that none is left talking to a closed origin
    for (const [name, app] of [...servers].reverse()) {
      await app.close().catch(() => undefined);
      servers.delete(name);
    }
  };
  try {
    const { app: origin } = await buildOrigin({ dataDir: originDir, tokens, logLevel, retention: EMBEDDED_RETENTION, soleWriter: true });
    servers.set('origin', origin);
    const originUrl = await listenLoopback(origin);
    const fleetRegions: FleetConfig['regions'] = {};
    const dirs = cacheDirs(regions);
    for (const region of regions) {
      const cache = await buildCacheServer({
        region,
        upstream: originUrl,
        dataDir: await movedFromOldName(dataRoot, region, dirs.get(region)!),
        maxSize: EMBEDDED_CACHE_SIZE,
        timeouts: DEFAULT_TIMEOUTS,
        mirrors: new Map(),
        logLevel,
      });
      servers.set(`cache:${region}`, cache);
      fleetRegions[region] = { caches: [await listenLoopback(cache)] };
    }
    return {
      fleet: { origin: originUrl, regions: fleetRegions, defaultRegion: regions[0], startupLimit: 4, dispatchDelay: '250ms', cacheTimeout: '30s' },
      token: tokens[0]!,
      servers,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * Each region's cache directory under the data root: `region-<name>`, the prefix given once
 * (region `a`: `region-a`; region `region-a`: `region-a` too, not `region-region-a`), but for
 * regions whose names would then share a directory (`a` beside `region-a`): `region-<name>`.
 */
function cacheDirs(regions: readonly string[]): Map<string, string> {
  const short = (region: string): string => (region.startsWith('region-') ? region : `region-${region}`);
  const clash = new Set(regions.map(short)).size < regions.length;
  return new Map(regions.map((region) => [region, clash ? `region-${region}` : short(region)]));
}

/**
 * The cache directory `dir` of `region`, where the copies an earlier run or demo kept under the
 * old name (`region-region-a`) are moved to, once: a cache starts warm, and no old copy is left.
 */
async function movedFromOldName(dataRoot: string, region: string, dir: string): Promise<string> {
  const path = join(dataRoot, dir);
  const old = join(dataRoot, `region-${region}`);
  if (old !== path && existsSync(old) && !existsSync(path)) await rename(old, path);
  return path;
}
