// Configuration of a regional cache: one TypeBox schema gives the types and the
// validation (config/cache-<region>.yaml); command-line flags override the file.
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import type { SettingPlace } from '../config/load.js';
import { durationSchema, positiveDurationSchema, positiveSizeSchema, sizeSchema } from '../config/validate.js';
import { NAME_PATTERN, NamedMap } from '../config/names.js';
import { parseBaseUrl, parseDuration, parseSize } from '../config/units.js';
import { errorMessage, UsageError } from '../errors.js';
import { logLevelSchema } from '../http/server-logging.js';
import { DEFAULT_MAX_CONNECTIONS } from '../http/connection-limits.js';
import { zeroCopyStatus } from '../http/zero-copy.js';
import { redactUrl } from '../redact-url.js';
import { PRIVATE_REDIRECTS, type PrivateRedirects } from './redirect-targets.js';

/** The most server processes `workers` may ask for. */
export const MAX_WORKERS = 64;

const timeoutsSchema = Type.Object(
  {
    /** TCP/TLS connect. */
    connect: Type.Optional(positiveDurationSchema()),
    /** From request sent to response headers: the bound on how long a miss may wait. */
    headers: Type.Optional(positiveDurationSchema()),
    /** Longest silence between two body chunks. */
    body: Type.Optional(positiveDurationSchema()),
  },
  { additionalProperties: false },
);

export const cacheConfigSchema = Type.Object(
  {
    region: Type.String({ minLength: 1, pattern: NAME_PATTERN, default: 'default' }),
    listen: Type.String({ default: '127.0.0.1:8081', format: 'listen' }),
    /** The origin, or a parent cache. */
    upstream: Type.String({ minLength: 1, format: 'base-url' }),
    /** Data directory; default cache/region-<region> under the working directory. */
    data: Type.Optional(Type.String({ minLength: 1 })),
    maxSize: Type.Optional(positiveSizeSchema()), // an LRU index cannot be bounded by nothing
    /** Memory the fills in flight of one process keep their last bytes in (see fill-progress.ts); default 1GiB. */
    fillMemory: Type.Optional(sizeSchema()),
    logLevel: Type.Optional(logLevelSchema()),
    /** Server processes sharing the port and the data directory; "auto" = one per CPU. */
    workers: Type.Optional(Type.Union([Type.Integer({ minimum: 1, maximum: MAX_WORKERS }), Type.Literal('auto')])),
    timeouts: Type.Optional(timeoutsSchema),
    /** On SIGTERM or SIGINT, how long requests in flight may finish before they are cut; default 20s. */
    shutdownTimeout: Type.Optional(durationSchema()),
    /** With workers: how long a worker may leave its primary unanswered before it is killed and replaced; default 30s. */
    workerTimeout: Type.Optional(positiveDurationSchema()),
    /** With workers: how long after a worker's death its replacement starts, doubled for each other death within the minute; default 250ms. */
    workerRestartDelay: Type.Optional(positiveDurationSchema()),
    /** How long a client's request head may take to arrive whole (see http/connection-limits.ts); default 15s. */
    clientHeaderTimeout: Type.Optional(positiveDurationSchema()),
    /** Client connections open at once in each server process past which a new one is answered 503 and closed; default DEFAULT_MAX_CONNECTIONS. */
    maxConnections: Type.Optional(Type.Integer({ minimum: 1 })),
    /** Connections each server process opens at most to each upstream (the origin, each mirror, a redirect's host); default 256. */
    upstreamConnections: Type.Optional(Type.Integer({ minimum: 1 })),
    /**
     * Whether the redirects a blob's fill follows may lead to loopback, private, link-local and
     * like addresses (redirect-targets.ts): auto (the default) when the upstream redirecting is
     * itself on one, allow, or refuse.
     */
    privateRedirects: Type.Optional(Type.Union(PRIVATE_REDIRECTS.map((p) => Type.Literal(p)), { description: PRIVATE_REDIRECTS.join(', ') })),
    /** Other upstreams served under /mirror/{name}/{path}. */
    mirrors: Type.Optional(
      NamedMap(
        Type.Object(
          {
            url: Type.String({ minLength: 1, format: 'base-url' }),
            timeouts: Type.Optional(timeoutsSchema),
            /**
             * A tooltool server: its /{algo}/{hex} paths are blobs, kept under their digest (shared
             * with /cas and /{algo}/{hex}) and verified, its redirects followed (tooltool.md §4-5).
             */
            tooltool: Type.Optional(Type.Boolean()),
          },
          { additionalProperties: false },
        ),
      ),
    ),
  },
  { additionalProperties: false },
);

export type CacheConfigFile = Static<typeof cacheConfigSchema>;

export interface MirrorConfig {
  readonly url: string;
  readonly timeouts: UpstreamTimeouts;
  /** A tooltool server (see the schema's `tooltool`). */
  readonly tooltool: boolean;
}

export interface UpstreamTimeouts {
  readonly connectMs: number;
  readonly headersMs: number;
  readonly bodyMs: number;
}

/** The resolved configuration buildCacheServer() takes. */
export interface CacheConfig {
  readonly region: string;
  readonly upstream: string;
  readonly dataDir: string;
  readonly maxSize: number;
  /** Where maxSize was set (the flag, the file's line), named by the start's refusal of one too small (DiskStore.open); default "maxSize". */
  readonly maxSizeSetting?: SettingPlace;
  /** Bytes of recent windows the fills of one process keep at most (see fill-progress.ts); default DEFAULT_FILL_MEMORY. */
  readonly fillMemory?: number;
  readonly timeouts: UpstreamTimeouts;
  readonly mirrors: ReadonlyMap<string, MirrorConfig>;
  /** pino level; 'silent' in tests. */
  readonly logLevel?: string;
  /** Server processes (1 or unset: this process serves; more: a primary and that many workers). */
  readonly workers?: number;
  /** On a stopping signal, how long requests in flight may finish (serveUntilSignal). */
  readonly shutdownTimeoutMs?: number;
  /** With workers: how long one may leave the primary unanswered before it is replaced (runCachePrimary). */
  readonly workerTimeoutMs?: number;
  /** With workers: the replacement of a dead one starts this long after, doubled per other death within the minute (runCachePrimary). */
  readonly workerRestartDelayMs?: number;
  /** How long a client's request head may take to arrive whole; default DEFAULT_CLIENT_HEADER_TIMEOUT_MS. */
  readonly clientHeaderTimeoutMs?: number;
  /** Client connections open at once per server process past which a new one is answered 503 and closed; default DEFAULT_MAX_CONNECTIONS (a file's resolution states it). */
  readonly maxConnections?: number;
  /** Connections per server process to each upstream host; default DEFAULT_UPSTREAM_CONNECTIONS. */
  readonly upstreamConnections?: number;
  /** Where the redirects a blob's fill follows may lead (see the schema's privateRedirects); default auto. */
  readonly privateRedirects?: PrivateRedirects;
  /** How long this process's fills not kept go on with no reader; default UNREAD_GRACE_MS. Internal (tests lower it): no file setting or flag. */
  readonly unreadGraceMs?: number;
}

export const DEFAULT_WORKER_TIMEOUT_MS = 30_000;
export const DEFAULT_WORKER_RESTART_DELAY_MS = 250;

export const DEFAULT_MAX_SIZE = 50 * 1024 ** 3;
export const DEFAULT_FILL_MEMORY = 1024 ** 3;
export const DEFAULT_TIMEOUTS: UpstreamTimeouts = { connectMs: 5_000, headersMs: 30_000, bodyMs: 60_000 };
/**
 * Connections a server process opens at most to one upstream host: a burst of thousands of
 * different misses waits for them in turn instead of opening thousands of sockets to the
 * origin (its file limit, its accept queue). Far above what a cold burst of small objects
 * keeps busy on a fast link (bench/cache.ts asks 32 at a time).
 */
export const DEFAULT_UPSTREAM_CONNECTIONS = 256;

/**
 * How long a client connection may see no traffic in either direction before it is cut:
 * twice the longest an upstream may legitimately keep a waiter silent (connect then
 * headers, or a pause in the body), so only a client that stopped reading (or sending) is
 * cut. 2 minutes with the default timeouts.
 */
export function clientIdleMs(config: Pick<CacheConfig, 'timeouts' | 'mirrors'>): number {
  const all = [config.timeouts, ...[...config.mirrors.values()].map((m) => m.timeouts)];
  return 2 * Math.max(...all.map((t) => Math.max(t.connectMs + t.headersMs, t.bodyMs)));
}

function resolveTimeouts(t: Static<typeof timeoutsSchema> | undefined, base: UpstreamTimeouts): UpstreamTimeouts {
  return {
    connectMs: t?.connect === undefined ? base.connectMs : parseDuration(t.connect),
    headersMs: t?.headers === undefined ? base.headersMs : parseDuration(t.headers),
    bodyMs: t?.body === undefined ? base.bodyMs : parseDuration(t.body),
  };
}

/** `url` without its trailing slashes, once checked (a config given as an object, not a file, skipped the schema). */
function checkUrl(url: string, what: string): string {
  try {
    parseBaseUrl(url);
  } catch (err) {
    throw new UsageError(`${what}: ${errorMessage(err)}`);
  }
  return url.replace(/\/+$/, '');
}

/** What a cache logs as it starts: its upstreams without credentials (see redactUrl), whether large bodies go by sendfile. */
export function startupFields(config: CacheConfig): Record<string, unknown> {
  return {
    region: config.region,
    data: config.dataDir,
    upstream: redactUrl(config.upstream),
    ...(config.mirrors.size === 0 ? {} : { mirrors: Object.fromEntries([...config.mirrors].map(([name, m]) => [name, redactUrl(m.url)])) }),
    maxSize: config.maxSize,
    sendfile: zeroCopyStatus(),
  };
}

/** Turns the validated file (or flags alone) into a CacheConfig. */
export function resolveCacheConfig(file: CacheConfigFile, cwd: string = process.cwd()): CacheConfig {
  const timeouts = resolveTimeouts(file.timeouts, DEFAULT_TIMEOUTS);
  const mirrors = new Map<string, MirrorConfig>();
  for (const [name, m] of Object.entries(file.mirrors ?? {})) {
    mirrors.set(name, { url: checkUrl(m.url, `mirrors.${name}.url`), timeouts: resolveTimeouts(m.timeouts, timeouts), tooltool: m.tooltool ?? false });
  }
  return {
    region: file.region,
    upstream: checkUrl(file.upstream, 'upstream'),
    dataDir: path.resolve(cwd, file.data ?? path.join('cache', `region-${file.region}`)),
    maxSize: file.maxSize === undefined ? DEFAULT_MAX_SIZE : parseSize(file.maxSize),
    fillMemory: file.fillMemory === undefined ? DEFAULT_FILL_MEMORY : parseSize(file.fillMemory),
    ...(file.logLevel === undefined ? {} : { logLevel: file.logLevel }),
    timeouts,
    mirrors,
    workers: file.workers === 'auto' ? Math.min(availableParallelism(), MAX_WORKERS) : file.workers ?? 1,
    ...(file.shutdownTimeout === undefined ? {} : { shutdownTimeoutMs: parseDuration(file.shutdownTimeout) }),
    ...(file.workerTimeout === undefined ? {} : { workerTimeoutMs: parseDuration(file.workerTimeout) }),
    ...(file.workerRestartDelay === undefined ? {} : { workerRestartDelayMs: parseDuration(file.workerRestartDelay) }),
    ...(file.clientHeaderTimeout === undefined ? {} : { clientHeaderTimeoutMs: parseDuration(file.clientHeaderTimeout) }),
    maxConnections: file.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
    ...(file.upstreamConnections === undefined ? {} : { upstreamConnections: file.upstreamConnections }),
    ...(file.privateRedirects === undefined ? {} : { privateRedirects: file.privateRedirects }),
  };
}

/**
 * Where the command's maxSize came from, for DiskStore.open's refusal of a budget too small:
 * the flag `--max-size` when given, else its line in the configuration file `file` was read
 * from (`placeInFile`, none without a file) when it sets one; undefined for the default.
 */
export function maxSizeSetting(flag: string | undefined, file: Partial<CacheConfigFile>, placeInFile: ((path: readonly string[]) => SettingPlace) | undefined): SettingPlace | undefined {
  if (flag !== undefined) return { place: '--max-size', field: 'maxSize' };
  return placeInFile !== undefined && file.maxSize !== undefined ? placeInFile(['maxSize']) : undefined;
}
