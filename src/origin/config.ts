// The origin's configuration: one TypeBox schema gives the type and the validation.
import { Type, type Static } from '@sinclair/typebox';
import { ageSchema, durationSchema, positiveDurationSchema, positiveSizeSchema } from '../config/validate.js';
import { DEFAULT_MAX_HEADERS } from '../http/server-options.js';
import { logLevelSchema } from '../http/server-logging.js';
import { NAME_PATTERN } from '../config/names.js';
import { DEFAULT_MAX_CONNECTIONS } from '../http/connection-limits.js';
import type { RetentionPolicy } from './retention.js';
import type { RunArtifactLimits } from './run-budget.js';

const DiskStorageSchema = Type.Object({ type: Type.Literal('disk') }, { additionalProperties: false });

/** S3-compatible object storage. Credentials come from the environment, never from the file. */
const S3StorageSchema = Type.Object(
  {
    type: Type.Literal('s3'),
    // no query or fragment (as a cache's upstream): the SDK dropped one unsaid (a ?token=… never sent)
    endpoint: Type.Optional(Type.String({ minLength: 1, format: 'base-url', description: 'e.g. https://minio.internal:9000; absent for AWS' })),
    // a name only: "bucket/dir" (a prefix written into it) failed at start as an SDK message, exit 6, no line
    bucket: Type.String({ minLength: 1, pattern: NAME_PATTERN, description: 'the bucket\'s name; a key prefix goes in prefix' }),
    region: Type.String({ minLength: 1, default: 'us-east-1' }),
    prefix: Type.Optional(Type.String({ description: 'key prefix, e.g. fleetcache/' })),
    forcePathStyle: Type.Optional(Type.Boolean({ description: 'bucket in the path (MinIO, Ceph RGW)' })),
    accessKeyIdEnv: Type.Optional(Type.String({ minLength: 1, description: 'environment variable holding the access key id' })),
    secretAccessKeyEnv: Type.Optional(Type.String({ minLength: 1, description: 'environment variable holding the secret key' })),
  },
  { additionalProperties: false },
);

export type StorageConfig = Static<typeof DiskStorageSchema> | Static<typeof S3StorageSchema>;

// if/then/else rather than a union: ajv then reports the errors of the chosen branch only
// ("storage.bucket: missing…"), not those of every branch, and fills only its defaults.
const StorageSchema = Type.Unsafe<StorageConfig>({
  type: 'object',
  required: ['type'],
  properties: { type: { anyOf: [{ const: 'disk' }, { const: 's3' }] } }, // a union: the message names both
  if: { properties: { type: { const: 'disk' } } },
  then: DiskStorageSchema,
  // s3 only when named: another type gets the enum's message above, not s3's missing bucket.
  else: { if: { properties: { type: { const: 's3' } } }, then: S3StorageSchema },
  default: { type: 'disk' },
});

export const OriginConfigSchema = Type.Object(
  {
    listen: Type.String({ default: '127.0.0.1:8080', format: 'listen', description: 'HOST:PORT; port 0 picks a free one' }),
    data: Type.String({ minLength: 1, default: 'cache/origin', description: 'data directory (blobs, names)' }),
    tokenFile: Type.Optional(Type.String({ minLength: 1, description: 'file holding the write token(s), one per line' })),
    readAccess: Type.Union([Type.Literal('public'), Type.Literal('token')], { default: 'public' }),
    limits: Type.Object(
      {
        maxBlobSize: positiveSizeSchema('20GiB'),
        maxRecordSize: positiveSizeSchema('1MiB'),
        maxRunArtifactsSize: positiveSizeSchema('50GiB'),
        maxRunArtifactsFiles: Type.Integer({ minimum: 1, default: 100_000, description: 'how many artifact files the machines of one run may upload with its run token' }),
        maxHeaders: Type.Integer({ minimum: 8, default: DEFAULT_MAX_HEADERS }),
        idleTimeout: positiveDurationSchema({
          default: '2m',
          description: 'a client connection with no traffic this long is cut (a client that stopped reading holds a file)',
        }),
        clientHeaderTimeout: positiveDurationSchema({
          default: '15s',
          description: 'a request head (request line and header fields) not whole this long after it started, after the connection opened, or after the keep-alive limit past the last answer, has its connection closed (bodies are not concerned)',
        }),
        maxConnections: Type.Integer({ minimum: 1, default: DEFAULT_MAX_CONNECTIONS, description: 'client connections open at once past which a new one is answered 503 and closed as it comes' }),
      },
      { additionalProperties: false, default: {} },
    ),
    storage: StorageSchema,
    retention: Type.Optional(
      Type.Object(
        {
          maxAge: ageSchema({ description: 'run manifests, artifacts and bases older than this are deleted, then the blobs only they named' }),
          keepBases: Type.Integer({ minimum: 0, default: 3, description: 'per project, the newest bases kept whatever their age (push deltas against the 3 newest)' }),
          interval: durationSchema({ default: '1h', description: 'how often to prune, the first a minute after start (10 minutes after the last stop, if later), or an interval after start when that is sooner; 0s: only on POST /-/prune' }),
        },
        { additionalProperties: false },
      ),
    ),
    logLevel: logLevelSchema({ default: 'info' }),
    shutdownTimeout: Type.Optional(durationSchema({
      description: 'on SIGTERM or SIGINT, how long requests in flight may finish before they are cut (default 20s)',
    })),
  },
  { additionalProperties: false },
);

export type OriginConfig = Static<typeof OriginConfigSchema>;

/** What buildOriginServer needs, already resolved (tokens read, sizes parsed). */
export interface OriginOptions {
  readonly dataDir: string;
  /** Accepted write tokens; writes are refused when empty. */
  readonly tokens: readonly string[];
  /**
   * Every write comes from this process (the embedded origin of a run): none can be in
   * flight across a stop, so retention protects nothing from before the start (references.ts).
   */
  readonly soleWriter?: boolean;
  readonly readAccess?: 'public' | 'token';
  readonly maxBlobSize?: number;
  readonly maxRecordSize?: number;
  /** What a run token may upload for its run (run-budget.ts); default 50 GiB in 100,000 files. */
  readonly runArtifacts?: RunArtifactLimits;
  readonly maxHeaders?: number;
  /** A client connection with no traffic either way this long is cut; default 2 minutes. */
  readonly idleTimeoutMs?: number;
  /** How long a request head may take to arrive whole (http/connection-limits.ts); default 15 s. */
  readonly clientHeaderTimeoutMs?: number;
  /** Client connections open at once past which a new one is closed; default DEFAULT_MAX_CONNECTIONS. */
  readonly maxConnections?: number;
  /** pino level, or false for no logs (tests). */
  readonly logLevel?: string | false;
  /** The longest drain at shutdown (the server's pluginTimeout is sized for it). */
  readonly shutdownTimeoutMs?: number;
  /** How often the store removes what interrupted uploads left (BlobStore.removeLeftovers); default 1 hour. */
  readonly leftoverSweepMs?: number;
  /** Deletes old names and the blobs only they named (retention.ts); none when absent. */
  readonly retention?: RetentionPolicy & { readonly intervalMs: number; readonly firstAfterMs?: number };
}
