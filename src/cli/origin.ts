// `fleetcache origin`: the artifact service.
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { parseDuration, parseSize } from '../config/units.js';
import type { OriginConfig, OriginOptions, StorageConfig } from '../origin/config.js';
import { envTokenProblem, exposedSecretWarning, MIN_TOKEN_LENGTH, readTokenLines, TOKEN_ENV } from '../client/token.js';
import { ConfigError } from '../errors.js';
import type { BlobStore } from '../store/blob-store.js';
import { DiskBlobStore } from '../store/disk.js';
import { dataDirError, makeDataDir } from '../path-checks.js';
import { readOrCreate } from '../store/create-once.js';
import { SERVER_HELP } from './server-help.js';

interface OriginFlags {
  config?: string;
  listen?: string;
  data?: string;
  tokenFile?: string;
}

/**
 * The write tokens: --token-file / tokenFile (one token per line, so a new one can be added
 * before the old one is removed), else $FLEETCACHE_TOKEN (unless `fromEnv` is false: the
 * embedded origin of a run), else a random token kept in <data>/token (mode 0600) so that a
 * local origin is never writable without one.
 */
export function resolveOriginTokens(tokenFile: string | undefined, dataDir: string, fromEnv = true): { tokens: string[]; source: string; file?: string } {
  if (tokenFile) return { tokens: readTokenLines(tokenFile), source: tokenFile, file: tokenFile };
  const env = fromEnv ? process.env[TOKEN_ENV]?.trim() : undefined;
  if (env) {
    // as a token file's lines are (readTokenLines): never its text in the message
    if (env.length < MIN_TOKEN_LENGTH) throw new ConfigError(`FLEETCACHE_TOKEN: a write token must be at least ${MIN_TOKEN_LENGTH} characters`);
    const problem = envTokenProblem(env);
    if (problem) throw new ConfigError(problem);
    return { tokens: [env], source: 'FLEETCACHE_TOKEN' };
  }
  const file = join(dataDir, 'token');
  makeDataDir(dataDir);
  let token: string;
  try {
    // two origins started at once on a new directory agree on one (the lock then stops the second)
    token = readOrCreate(file, () => randomBytes(24).toString('base64url'), 0o600);
  } catch (err) {
    throw dataDirError(err, dataDir, 'cannot hold its write token (token)');
  }
  return { tokens: [token], source: file, file };
}

/**
 * An origin's data is its owner's (and its group's): internal blobs, tokens. Files it
 * creates are not readable by other local users, whatever the umask it was started with
 * (the systemd units set UMask=0027 too; a start by hand had 022). A cache keeps public
 * content only, its blobs 0644 by its own chmod.
 */
function restrictCreatedFiles(): void {
  process.umask(process.umask() | 0o027);
}

/** The origin's configuration from `file`, else the defaults (`origin` and `verify` read it alike). */
export async function loadOriginConfig(file: string | undefined): Promise<OriginConfig> {
  const { OriginConfigSchema } = await import('../origin/config.js');
  // the YAML parser loads for a file only
  if (!file) return (await import('../config/validate.js')).defaultsOf(OriginConfigSchema);
  return (await import('../config/load.js')).loadConfigFile(OriginConfigSchema, file);
}

/**
 * The blob store named by `storage:`; S3 credentials are read from the environment variables
 * it names. The S3 module is loaded only here: the AWS SDK adds 0.4 s to a start. A variable
 * it names that is unset is a configuration error (exit 3) naming `file`.
 */
export async function createBlobStore(storage: StorageConfig, dataDir: string, env: NodeJS.ProcessEnv = process.env, file = '(configuration)'): Promise<BlobStore> {
  if (storage.type === 'disk') return new DiskBlobStore(dataDir);
  const fromEnv = (name: string | undefined, field: string): string | undefined => {
    if (name === undefined) return undefined;
    const value = env[name];
    if (!value) throw new ConfigError(`${file}: storage.${field} names the environment variable ${name}, which is not set`, file, undefined, `storage.${field}`);
    return value;
  };
  const accessKeyId = fromEnv(storage.accessKeyIdEnv, 'accessKeyIdEnv');
  const secretAccessKey = fromEnv(storage.secretAccessKeyEnv, 'secretAccessKeyEnv');
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    throw new ConfigError(`${file}: storage: give both accessKeyIdEnv and secretAccessKeyEnv, or neither (the SDK default chain)`, file, undefined, 'storage');
  }
  const [{ S3BlobStore }, { filePlace }] = await Promise.all([import('../store/s3.js'), import('../config/load.js')]);
  // read again only when an error names a field; a file gone meanwhile names no line
  const lineOf = (field: string): number | undefined => {
    try {
      return filePlace(file, field.split('.')).line;
    } catch {
      return undefined;
    }
  };
  return new S3BlobStore({
    bucket: storage.bucket,
    region: storage.region,
    ...(storage.endpoint === undefined ? {} : { endpoint: storage.endpoint }),
    ...(storage.prefix === undefined ? {} : { prefix: storage.prefix }),
    ...(storage.forcePathStyle === undefined ? {} : { forcePathStyle: storage.forcePathStyle }),
    ...(accessKeyId && secretAccessKey ? { credentials: { accessKeyId, secretAccessKey } } : {}),
    configFile: file,
    lineOf,
  });
}

export function originOptionsFrom(config: OriginConfig, flags: OriginFlags): { options: OriginOptions; listen: string; tokenSource: string; tokenFile?: string } {
  const dataDir = resolve(flags.data ?? config.data);
  const { tokens, source, file } = resolveOriginTokens(flags.tokenFile ?? config.tokenFile, dataDir);
  const shutdownTimeoutMs = config.shutdownTimeout === undefined ? undefined : parseDuration(config.shutdownTimeout);
  return {
    listen: flags.listen ?? config.listen,
    tokenSource: source,
    ...(file ? { tokenFile: file } : {}),
    options: {
      ...(shutdownTimeoutMs === undefined ? {} : { shutdownTimeoutMs }),
      dataDir,
      tokens,
      readAccess: config.readAccess,
      maxBlobSize: parseSize(config.limits.maxBlobSize),
      maxRecordSize: parseSize(config.limits.maxRecordSize),
      runArtifacts: { maxBytes: parseSize(config.limits.maxRunArtifactsSize), maxFiles: config.limits.maxRunArtifactsFiles },
      maxHeaders: config.limits.maxHeaders,
      idleTimeoutMs: parseDuration(config.limits.idleTimeout),
      clientHeaderTimeoutMs: parseDuration(config.limits.clientHeaderTimeout),
      maxConnections: config.limits.maxConnections,
      logLevel: config.logLevel,
      ...(config.retention
        ? {
            retention: {
              maxAgeMs: parseDuration(config.retention.maxAge),
              keepBases: config.retention.keepBases,
              intervalMs: parseDuration(config.retention.interval),
            },
          }
        : {}),
    },
  };
}

export function registerOrigin(program: Command): void {
  program
    .command('origin')
    .description('Run the artifact service: content-addressed blobs, names, tooltool downloads, authenticated uploads')
    .option('-c, --config <file>', 'YAML configuration (see config/origin.yaml)')
    .option('--listen <host:port>', 'address to listen on; port 0 picks a free one (default 127.0.0.1:8080)')
    .option('--data <dir>', 'data directory (default cache/origin)')
    .option('--token-file <file>', "file with the write token(s), one per line (default: the configuration file's tokenFile:, else $FLEETCACHE_TOKEN, else <data>/token)")
    .addHelpText('after', `${SERVER_HELP}\nWith retention: in the configuration, old runs, artifacts and bases are pruned (POST /-/prune?dry-run=1 with a write token shows what goes; deploy/OPERATIONS.md).`)
    .action(async (flags: OriginFlags) => {
      restrictCreatedFiles();
      // the configuration's parser and the server (fastify, its routes) load once the command
      // runs, not for --help
      const [{ checkFlags }, { OriginConfigSchema }, { buildOriginServer }, { serveUntilSignal }, { createLogger }, { serverLogLevel }, { zeroCopyStatus }] = await Promise.all([
        import('../config/validate.js'),
        import('../origin/config.js'),
        import('../origin/server.js'),
        import('./listen.js'),
        import('../log.js'),
        import('../http/server-logging.js'),
        import('../http/zero-copy.js'),
      ]);
      const config = await loadOriginConfig(flags.config);
      checkFlags(OriginConfigSchema, { listen: ['--listen', flags.listen], data: ['--data', flags.data] });
      const { options, listen, tokenSource, tokenFile } = originOptionsFrom(config, flags);
      const app = await buildOriginServer(options, await createBlobStore(config.storage, options.dataDir, process.env, flags.config));
      const log = createLogger(serverLogLevel(config.logLevel));
      log.info({ data: options.dataDir, storage: config.storage.type, tokenSource, sendfile: zeroCopyStatus() }, 'origin starting');
      const exposed = tokenFile && exposedSecretWarning(tokenFile);
      if (exposed) log.warn(exposed);
      // the drain the server was built for (buildOriginServer sized its pluginTimeout by it)
      await serveUntilSignal(app, listen, options.shutdownTimeoutMs === undefined ? {} : { shutdownTimeoutMs: options.shutdownTimeoutMs });
    });
}
