// Blob store on S3-compatible object storage (AWS S3, MinIO, Ceph RGW). Layout under
// an optional key prefix:
//   <prefix>cas/<algo>/<2 hex>/<hex>   committed objects
//   <prefix>tmp/<time>-<random>        uploads in progress
// A put streams the body into a temporary key (a multipart upload through lib-storage,
// so memory stays at a few parts, about 6 × partSize measured, whatever the size) while hashing it, verifies size and digest,
// then copies the object server-side to its final key and deletes the temporary one.
// The final key therefore only ever holds a whole, verified object; a crash leaves at
// most a temporary key (removed once a day old, at open() and every hour by the origin, unless
// a put of this process is still at it) or an unfinished multipart upload (see the bucket
// lifecycle rule in deploy/OPERATIONS.md).
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
  UploadPartCopyCommand,
  AbortMultipartUploadCommand,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { ConfigError, errorMessage, FleetError, NotFoundError } from '../errors.js';
import { redactUrl } from '../redact-url.js';
import { isAbort, uploadAborted, type BlobStat, type BlobStore, type PutOptions, type PutResult, type ReadRange } from './blob-store.js';
import { isDigestAlgorithm, isStoredHex, type Digest } from './digest.js';
import { putMeter } from './put-meter.js';

/** Temporary keys older than this are leftovers of a crash (another origin may share the bucket). */
const DEFAULT_TMP_MAX_AGE_MS = 24 * 3600 * 1000;
/** CopyObject copies at most 5 GiB; larger objects are copied part by part. */
const MAX_SINGLE_COPY = 5 * 1024 ** 3;
const COPY_PART_SIZE = 1024 ** 3;
/** A multipart upload has at most this many parts (S3's limit; lib-storage fails past it). */
const MAX_PARTS = 10_000;
/**
 * How long a request to the storage may go without a byte either way. The SDK waits without
 * end by default: a hung endpoint held every request (and the origin's start) for ever, and
 * the 50 sockets of its pool with them. Generous: S3 keeps a long copy's answer alive with
 * whitespace, other servers may not.
 */
const DEFAULT_IDLE_TIMEOUT_MS = 2 * 60_000;
const CONNECT_TIMEOUT_MS = 10_000;

export interface S3StoreOptions {
  readonly bucket: string;
  readonly region: string;
  /** e.g. http://127.0.0.1:9000 for MinIO; absent for AWS. */
  readonly endpoint?: string;
  /** Key prefix, e.g. "fleetcache/"; a trailing slash is added when missing. */
  readonly prefix?: string;
  /** Path-style URLs (bucket in the path): needed by most non-AWS servers. */
  readonly forcePathStyle?: boolean;
  /** Absent: the SDK's default chain (environment, instance role…). */
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string };
  /**
   * Multipart part size (default 8 MiB, min 5 MiB). A put whose maxSize (or expectedSize)
   * 10,000 parts of it would not hold uses parts of a ten-thousandth of that instead.
   */
  readonly partSize?: number;
  /** Parts uploaded at once; memory per upload is about partSize × (queueSize + 4), with those being gathered. */
  readonly queueSize?: number;
  /** open() and removeLeftovers() delete temporary keys older than this (default one day). */
  readonly tmpMaxAgeMs?: number;
  /** A request (or a body read) with no traffic for this long fails (default 2 minutes); the SDK retries it. */
  readonly idleTimeoutMs?: number;
  /** The configuration file these options come from, named when a listing finds them wrong (see misconfiguration). */
  readonly configFile?: string;
  /** The line of a field of configFile (e.g. "storage.endpoint"), named with it; asked only when a listing fails. */
  readonly lineOf?: (field: string) => number | undefined;
}

/** The HTTP status of an S3 error, when it has one. */
function statusOf(err: unknown): unknown {
  return (err as { $metadata?: { httpStatusCode?: unknown } } | null)?.$metadata?.httpStatusCode;
}

/**
 * Whether an S3 error means "no such object": 404 (NoSuchKey on GET, a bare NotFound on
 * HEAD). Not a 403: S3 answers that for refused credentials (rotated, wrong, a clock skewed)
 * and, without s3:ListBucket, for a missing key too; taken for a miss, it had every blob
 * look absent and the caches pass 404s on. A 403 is an error (see refusedError).
 */
export function isMissingObjectError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { name?: unknown; Code?: unknown };
  if (e.name === 'NoSuchKey' || e.name === 'NotFound' || e.Code === 'NoSuchKey') return true;
  return statusOf(err) === 404;
}

export class S3BlobStore implements BlobStore {
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #partSize: number;
  readonly #queueSize: number;
  readonly #tmpMaxAgeMs: number;
  /** Where the bucket is and whose credentials ask, for the messages of misconfiguration(). */
  readonly #setting: StorageSetting;
  /** The copy into each final key in progress here (see #commit). */
  readonly #committing = new Map<string, Promise<boolean>>();
  /**
   * The temporary keys of this store's puts in progress, which removeLeftovers keeps whatever
   * their age: on S3 a multipart upload's key is as old as the upload, and one that took over
   * tmpMaxAgeMs lost its key to the hourly sweep just before its copy, failing at the end.
   */
  readonly #putsInProgress = new Set<string>();

  constructor(options: S3StoreOptions) {
    const config: S3ClientConfig = {
      region: options.region,
      forcePathStyle: options.forcePathStyle ?? false,
      // Checksums only where S3 requires them: the default (CRC32 trailers in aws-chunked
      // bodies) is not understood by several S3-compatible servers; we verify digests ourselves.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        connectionTimeout: Math.min(CONNECT_TIMEOUT_MS, options.idleTimeoutMs ?? CONNECT_TIMEOUT_MS),
        socketTimeout: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
      },
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      ...(options.credentials ? { credentials: { ...options.credentials } } : {}),
    };
    // The SDK's own opt-out, read when a client is made, of its multi-line warning (on every
    // start under Node < 22) that its releases after January 2027 need Node 22: it cluttered
    // error output and the JSON logs; deploy/OPERATIONS.md says it once. An operator's own
    // setting of the variable wins.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    this.#client = new S3Client(config);
    this.#bucket = options.bucket;
    const prefix = options.prefix ?? '';
    this.#prefix = prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
    this.#partSize = Math.max(options.partSize ?? 8 * 1024 ** 2, 5 * 1024 ** 2);
    this.#queueSize = options.queueSize ?? 2;
    this.#tmpMaxAgeMs = options.tmpMaxAgeMs ?? DEFAULT_TMP_MAX_AGE_MS;
    this.#setting = {
      bucket: options.bucket,
      where: options.endpoint === undefined ? `AWS S3 (region ${options.region})` : redactUrl(options.endpoint),
      region: options.region,
      ownCredentials: options.credentials !== undefined,
      endpointGiven: options.endpoint !== undefined,
      file: options.configFile ?? '(configuration)',
      lineOf: options.lineOf ?? (() => undefined),
    };
  }

  keyOf(d: Digest): string {
    return `${this.#prefix}cas/${d.algo}/${d.hex.slice(0, 2)}/${d.hex}`;
  }

  /** Checks that the bucket answers, and removes temporary keys left by a crash. */
  async open(): Promise<void> {
    await this.removeLeftovers();
  }

  /** Deletes the temporary keys older than tmpMaxAgeMs: a crash's, or a put's whose own delete failed. */
  async removeLeftovers(): Promise<void> {
    const cutoff = Date.now() - this.#tmpMaxAgeMs;
    for await (const obj of this.#listKeys(`${this.#prefix}tmp/`)) {
      if (obj.lastModified < cutoff && !this.#putsInProgress.has(obj.key)) await this.#deleteKey(obj.key);
    }
  }

  async has(d: Digest): Promise<boolean> {
    try {
      await this.stat(d);
      return true;
    } catch (err) {
      if (err instanceof NotFoundError) return false;
      throw err;
    }
  }

  async stat(d: Digest): Promise<BlobStat> {
    const key = this.keyOf(d);
    const head = await this.#read(d, () => this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: key })));
    return { digest: d, size: head.ContentLength ?? 0, mtimeMs: head.LastModified?.getTime() ?? 0 };
  }

  async createReadStream(d: Digest, range?: ReadRange): Promise<Readable> {
    const input = { Bucket: this.#bucket, Key: this.keyOf(d), ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}) };
    const res = await this.#read(d, () => this.#client.send(new GetObjectCommand(input)));
    if (!(res.Body instanceof Readable)) throw new FleetError('FC_ERR_INTERNAL', 'object storage returned a body that is not a Node stream');
    return res.Body;
  }

  async put(body: Readable, options: PutOptions = {}): Promise<PutResult> {
    const tmpKey = `${this.#prefix}tmp/${Date.now().toString(36)}-${randomBytes(8).toString('hex')}`;
    const { meter, verify } = putMeter(options);
    const upload = new Upload({
      client: this.#client,
      params: { Bucket: this.#bucket, Key: tmpKey, Body: meter },
      partSize: partSizeFor(this.#partSize, options.expectedSize ?? options.maxSize),
      queueSize: this.#queueSize,
      leavePartsOnError: false,
    });
    const onAbort = () => meter.destroy(uploadAborted());
    options.signal?.addEventListener('abort', onAbort, { once: true });
    this.#putsInProgress.add(tmpKey);
    try {
      // Both must settle, and the first error is the one to report: a client that cuts its
      // body fails the upload after it, and an upload that fails (a refusal of the storage)
      // stops reading the body, which then fails too, as "premature close".
      let first: { error: unknown } | undefined;
      const noted = (error: unknown): never => {
        first ??= { error };
        throw error;
      };
      await Promise.allSettled([pipeline(body, meter).catch(noted), upload.done().catch(noted)]);
      if (first) throw first.error;
      const { digest, size } = verify();
      await options.beforeCommit?.(digest, size);
      return { digest, size, created: await this.#commit(tmpKey, digest, size) };
    } catch (err) {
      if (err instanceof FleetError) throw err;
      if (options.signal?.aborted || isAbort(err)) throw uploadAborted(err);
      throw storageError('upload', err);
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      if (!meter.destroyed) meter.destroy();
      // Deleting an absent key succeeds, so this also covers uploads that never completed.
      await this.#deleteKey(tmpKey).catch(() => undefined);
      this.#putsInProgress.delete(tmpKey);
    }
  }

  async delete(d: Digest): Promise<boolean> {
    const key = this.keyOf(d);
    // S3's DeleteObject succeeds for absent keys, so presence is checked first. Only a 404 is
    // absence (has, through #read): a 403 taken for one would have retention forget every blob for good.
    if (!(await this.has(d))) return false;
    await this.#deleteKey(key).catch((err: unknown) => Promise.reject(storageError('delete', err)));
    return true;
  }

  async *list(): AsyncIterable<BlobStat> {
    const base = `${this.#prefix}cas/`;
    for await (const obj of this.#listKeys(base)) {
      const [algo, shard, hex, ...rest] = obj.key.slice(base.length).split('/');
      // Only a blob's own key, as disk.ts: a key an operator or a tool left there (a copy
      // `<hex>.bak`, an upper-case name) is no blob, and `verify --remove` would delete it.
      if (!algo || !isDigestAlgorithm(algo) || !hex || rest.length > 0 || !isStoredHex(algo, hex) || shard !== hex.slice(0, 2)) continue;
      yield { digest: { algo, hex }, size: obj.size, mtimeMs: obj.lastModified };
    }
  }

  /**
   * Copies the verified upload `tmpKey` to its final key unless the object is there; true
   * when it copied. Copies into one key run one at a time in this process, so the later
   * puts of a digest find it and skip theirs (S3 itself takes concurrent copies of identical
   * bytes, the last wins whole; s3rver, the tests' S3, failed on them).
   */
  async #commit(tmpKey: string, digest: Digest, size: number): Promise<boolean> {
    const key = this.keyOf(digest);
    const before = this.#committing.get(key);
    const run = (async () => {
      await before?.catch(() => undefined);
      if (await this.has(digest)) return false;
      await this.#copy(tmpKey, key, size);
      return true;
    })();
    this.#committing.set(key, run);
    try {
      return await run;
    } finally {
      if (this.#committing.get(key) === run) this.#committing.delete(key);
    }
  }

  /** Server-side copy: one CopyObject up to 5 GiB, else a multipart copy in 1 GiB parts. */
  async #copy(from: string, to: string, size: number): Promise<void> {
    const source = `${this.#bucket}/${encodeURIComponent(from).replace(/%2F/g, '/')}`;
    if (size <= MAX_SINGLE_COPY) {
      await this.#client.send(new CopyObjectCommand({ Bucket: this.#bucket, Key: to, CopySource: source }));
      return;
    }
    const { UploadId } = await this.#client.send(new CreateMultipartUploadCommand({ Bucket: this.#bucket, Key: to }));
    try {
      const parts: { ETag: string; PartNumber: number }[] = [];
      for (let start = 0, n = 1; start < size; start += COPY_PART_SIZE, n++) {
        const end = Math.min(start + COPY_PART_SIZE, size) - 1;
        const res = await this.#client.send(
          new UploadPartCopyCommand({ Bucket: this.#bucket, Key: to, UploadId, PartNumber: n, CopySource: source, CopySourceRange: `bytes=${start}-${end}` }),
        );
        parts.push({ ETag: res.CopyPartResult?.ETag ?? '', PartNumber: n });
      }
      await this.#client.send(new CompleteMultipartUploadCommand({ Bucket: this.#bucket, Key: to, UploadId, MultipartUpload: { Parts: parts } }));
    } catch (err) {
      await this.#client.send(new AbortMultipartUploadCommand({ Bucket: this.#bucket, Key: to, UploadId })).catch(() => undefined);
      throw err;
    }
  }

  async #deleteKey(key: string): Promise<void> {
    await this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: key }));
  }

  async *#listKeys(prefix: string): AsyncIterable<{ key: string; size: number; lastModified: number }> {
    let token: string | undefined;
    do {
      const page = await this.#client
        .send(new ListObjectsV2Command({ Bucket: this.#bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) }))
        .catch((err: unknown) => Promise.reject(misconfiguration(err, this.#setting) ?? listingError(err, this.#setting)));
      // Every S3 listing names its bucket. A server that is no S3 API (a web console, a proxy's
      // page) answered 200 with none, and was taken for an empty bucket: the origin started,
      // found every blob "there" (its HEADs answer 200 too), served its page as each blob,
      // and told uploads they were stored, discarding them.
      if (page.Name === undefined) throw notS3(this.#setting, 'a 200 that is no S3 listing');
      for (const o of page.Contents ?? []) {
        if (o.Key) yield { key: o.Key, size: o.Size ?? 0, lastModified: o.LastModified?.getTime() ?? 0 };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  /** Runs a read of one object: a miss becomes NotFoundError, anything else a 503. */
  async #read<T>(d: Digest, send: () => Promise<T>): Promise<T> {
    try {
      return await send();
    } catch (err) {
      if (isMissingObjectError(err)) throw new NotFoundError(`no object ${d.algo}:${d.hex}`);
      if (statusOf(err) === 403) throw refusedError(d, err);
      throw storageError('read', err);
    }
  }
}

/**
 * The part size of an upload of at most `largest` bytes: the configured one, or larger when
 * 10,000 of those would not hold it. With 8 MiB parts, a body past 80 GiB (a maxBlobSize
 * above it) failed once that much had streamed, as a 503 its client retried.
 */
function partSizeFor(configured: number, largest: number | undefined): number {
  if (largest === undefined || !Number.isFinite(largest)) return configured;
  return Math.max(configured, Math.ceil(largest / MAX_PARTS));
}

function storageError(what: string, err: unknown): FleetError {
  const message = errorMessage(err);
  return new FleetError('FC_ERR_UNAVAILABLE', `object storage ${what} failed: ${message}`, { cause: err });
}

interface StorageSetting {
  readonly bucket: string;
  /** The endpoint, or AWS and its region. */
  readonly where: string;
  readonly region: string;
  /** Whether the credentials come from the variables the configuration names, not the SDK's chain. */
  readonly ownCredentials: boolean;
  /** Whether storage.endpoint is set (else the SDK asks AWS's endpoint of storage.region). */
  readonly endpointGiven: boolean;
  readonly file: string;
  readonly lineOf: (field: string) => number | undefined;
}

/** Where `field` is set: "file:line: field" (the line when known), and the line. */
function placeOf(setting: StorageSetting, field: string): { place: string; line: number | undefined } {
  const line = setting.lineOf(field);
  return { place: `${setting.file}${line === undefined ? '' : `:${line}`}: ${field}`, line };
}

/** A ConfigError naming the file, the line (when known) and the field of `setting` it is about. */
function settingError(setting: StorageSetting, field: string, problem: string): ConfigError {
  const { place, line } = placeOf(setting, field);
  return new ConfigError(`${place}: ${problem}`, setting.file, line, field);
}

/**
 * The error of a listing that failed otherwise (exit 6: the storage may answer later). One
 * that got no answer at all (refused, reset, timed out) names where the endpoint is set: the
 * origin's start and `verify` said only "connect ECONNREFUSED 127.0.0.1:9", and a wrong
 * endpoint (a typo in its port) looked like a storage down.
 */
function listingError(err: unknown, setting: StorageSetting): FleetError {
  const failed = storageError('list', err);
  if (statusOf(err) !== undefined) return failed;
  const field = setting.endpointGiven ? 'storage.endpoint' : 'storage.region';
  const { place } = placeOf(setting, field);
  return new FleetError('FC_ERR_UNAVAILABLE', `${place}: ${failed.message} (no answer from ${setting.where}: is ${field} right, and the storage up?)`, { cause: err });
}

/**
 * The configuration error (exit 3, naming the field) a listing's failure means: the listing
 * is what the origin's start and `verify` ask first, and a bucket that is not there or
 * credentials refused fail every start alike. Anything else (a network error, a 5xx, a clock
 * skewed) is undefined: the storage may answer later.
 */
function misconfiguration(err: unknown, setting: StorageSetting): ConfigError | undefined {
  const code = (err as { name?: unknown } | null)?.name;
  const { bucket, where, region, ownCredentials } = setting;
  const keyField = ownCredentials ? 'storage.accessKeyIdEnv' : 'storage';
  const known: Record<string, [field: string, problem: string]> = {
    NoSuchBucket: ['storage.bucket', `there is no bucket "${bucket}" at ${where}: create it, or correct storage.bucket (or storage.endpoint, storage.region)`],
    InvalidAccessKeyId: [keyField, `${where} does not know the access key id ${ownCredentials ? 'in the variable storage.accessKeyIdEnv names' : "of the AWS SDK's default chain (no storage.accessKeyIdEnv)"}`],
    SignatureDoesNotMatch: [ownCredentials ? 'storage.secretAccessKeyEnv' : 'storage', `${where} refused the signature: the secret key ${ownCredentials ? 'in the variable storage.secretAccessKeyEnv names' : "of the AWS SDK's default chain"} is not the access key's`],
    // AWS: a bucket of another region than storage.region (the second names the one expected)
    PermanentRedirect: ['storage.region', `${where} says bucket "${bucket}" is not in region ${region}: correct storage.region`],
    AuthorizationHeaderMalformed: ['storage.region', `${where} refused the request's region ${region}: ${errorMessage(err)}`],
    AccessDenied: [keyField, `${where} refused to list bucket "${bucket}": the credentials need s3:ListBucket on it (and s3:GetObject, s3:PutObject, s3:DeleteObject, s3:AbortMultipartUpload)`],
  };
  const found = typeof code === 'string' ? known[code] : undefined;
  if (!found) {
    // an S3 API answers a listing's 404 with NoSuchBucket, above; a bare one is another server's,
    // as is a 200 the SDK could not read as a listing (JSON, text)
    const status = statusOf(err);
    if (status === 404) return notS3(setting, 'HTTP 404 with no S3 error');
    return status === 200 ? notS3(setting, 'a 200 that is no S3 listing') : undefined;
  }
  const [field, problem] = found;
  return settingError(setting, field, problem);
}

/** The configuration error of an endpoint that answered the listing of the bucket as no S3 API would. */
function notS3(setting: StorageSetting, answer: string): ConfigError {
  const { bucket, where } = setting;
  return settingError(setting, 'storage.endpoint', `${where} answered the listing of bucket "${bucket}" with ${answer}: is it the address of the S3 API (not of a web console), and storage.forcePathStyle right?`);
}

/** A read answered 403: the origin's credentials, not the object, are the problem (a 503, logged). */
function refusedError(d: Digest, err: unknown): FleetError {
  // a HEAD's 403 has no body, which the SDK names "UnknownError": nothing to add then
  const said = errorMessage(err);
  return new FleetError(
    'FC_ERR_UNAVAILABLE',
    `object storage refused the credentials for a read of ${d.algo}:${d.hex} (HTTP 403${said === 'UnknownError' ? '' : `: ${said}`}): check the origin's S3 credentials and that they allow s3:GetObject and s3:ListBucket (without ListBucket, S3 answers 403 for a missing key)`,
    { cause: err },
  );
}
