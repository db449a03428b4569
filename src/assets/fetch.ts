// Fetching tooltool assets (shared/tooltool.md §3): per record, in manifest order, a
// file already present and valid is kept, then the local cache folder is tried, then
// each base URL in order (`<base>/<algorithm>/<digest>`, one plain GET, the headers of
// the real client). Bytes are streamed into a temp file in the destination while being
// hashed; size and digest are checked before the rename gives the file its name, so a
// partial or wrong file never appears. Unlike tooltool, a wrong body from one URL moves
// on to the next URL (a broken mirror should not fail a machine), and cache-folder
// entries are committed with a rename, so concurrent runs never read half a copy.
import { constants, createReadStream } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, open, rename, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Dispatcher } from 'undici';
import { requestUrl } from '../http/request-url.js';
import { cacheLimits, limitedDispatch } from '../client/http.js';
import { answerOf, DigestMismatchError, errorMessage, failedRequest, FleetError, type FailedRequest, NotFoundError, SizeMismatchError, UpstreamError, UsageError, toFleetError, type ErrorCode } from '../errors.js';
import { createAssetHash, hashFile, inManifestOrder, readManifest, type DroppedRecord, type InvalidRecord, type ManifestRecord } from './manifest.js';
import { unpackArchive, type ArchiveKind } from './unpack.js';
import { removeAbandonedPartials, withPartialFile } from '../partial-file.js';
import { redactUrl, redactUrlAndQuery } from '../redact-url.js';
import { quotedReasons } from '../quoted-reasons.js';
import { VERSION } from '../version.js';

/** 'skipped': not among the files named, and neither present nor in the cache folder (not downloaded). */
type AssetSource = 'present' | 'cache' | 'download' | 'skipped';

export interface AssetProgress {
  readonly filename: string;
  /** Bytes received so far for this file (from the network or the cache folder). */
  readonly received: number;
  readonly total: number | null;
  readonly source: 'cache' | 'download';
  readonly done: boolean;
}

interface FetchAssetsOptions {
  readonly manifestPath: string;
  /** Base URLs, tried in order (nearest cache first). */
  readonly urls: readonly string[];
  /** tooltool's local cache folder: a flat directory of files named by hex digest. */
  readonly cacheFolder?: string;
  /** Where files appear and archives unpack (default: the current directory). */
  readonly dest?: string;
  /** Sent as `Authorization: Bearer …` on the first request of each download, never after a redirect. */
  readonly token?: string;
  /**
   * Download only these manifest filenames (default: all). As tooltool's `fetch FILE...`,
   * it limits the download only: every record is still checked where it is (an invalid
   * file is deleted), taken from the cache folder, and unpacked when flagged.
   */
  readonly files?: readonly string[];
  /** tooltool's --region: `?region=<region>` on every download URL. */
  readonly region?: string;
  readonly onProgress?: (progress: AssetProgress) => void;
  readonly signal?: AbortSignal;
  readonly dispatcher?: Dispatcher;
  /**
   * How long each URL but the last (a cache; the last is the origin) may take to accept a
   * connection, and keep silent, for its answer's headers and then within its body, before
   * the next URL is tried (the agent's, from the fleet's cacheTimeout); clientAgent's 10 s,
   * 60 s and 120 s otherwise. Such a
   * URL whose bytes come slower than the floor it sets (cacheSpeedFloor: 16 KiB/s over twice
   * this) is given up on too.
   */
  readonly cacheTimeoutMs?: number;
}

interface AssetResult {
  readonly filename: string;
  readonly size: number | null;
  readonly digest: string;
  /** Where the file came from; undefined when it failed. */
  source?: AssetSource;
  /** The base URL that served it, credentials hidden (redactUrl): it is printed, and logged by the runner. */
  url?: string;
  /** Bytes received over the network for this file, failed attempts included. */
  bytesDownloaded: number;
  /** Bytes copied from the local cache folder. */
  bytesFromCache: number;
  unpacked?: ArchiveKind;
  /** Problems that did not fail the file (a bad cache entry, a URL that failed first). */
  readonly warnings: string[];
  /** The base URLs (redactUrl) that failed to serve it, and why, in the order tried. */
  readonly failedUrls: Array<{ readonly url: string; readonly code: ErrorCode }>;
  error?: FleetError;
}

export interface FetchAssetsResult {
  readonly files: readonly AssetResult[];
  readonly failed: number;
  readonly bytesDownloaded: number;
  readonly bytesFromCache: number;
  /** Records tooltool would skip silently (a required key missing). */
  readonly dropped: readonly DroppedRecord[];
  /** The manifest's values tooltool accepts that are likely mistakes (Manifest.warnings). */
  readonly manifestWarnings: readonly string[];
  /** File names asked for (`files`) that no record has: ignored, as tooltool ignores them. */
  readonly unknownFiles: readonly string[];
}

const USER_AGENT = `fleetcache-assets/${VERSION}`;
/** Redirects followed per download: 10, as urllib's HTTPRedirectHandler (tooltool's client) follows. */
const MAX_REDIRECTS = 10;

/**
 * `<base>/<algorithm>/<digest>` as tooltool builds it (tooltool.md §3.1): urljoin of the base,
 * ending in one slash, and "<algorithm>/<digest>". The base's path prefix is kept, its query
 * and fragment dropped, and its empty segments too, as Python's urljoin drops them ("a//b/"
 * is "a/b/"; "a//" is "a/").
 */
function assetUrl(base: string, record: Pick<ManifestRecord, 'algorithm' | 'digest'>): string {
  const prefix = new URL(`${base.replace(/\/+$/, '')}/`);
  prefix.pathname = prefix.pathname.replace(/\/{2,}/g, '/');
  return new URL(`${record.algorithm}/${record.digest}`, prefix).href;
}

/** Cleanup after a failure: its own error (a cache folder that is a file, read-only) must not replace the real outcome. */
async function removeQuietly(path: string): Promise<void> {
  await rm(path, { force: true }).catch(() => undefined);
}

/** tooltool's files are private: mkstemp's 0600 for what it fetches, and cache-folder copies of those. */
const FILE_MODE = 0o600;

/**
 * Streams `source` into a new file at `tmp` (mode 0600 whatever the umask) while hashing,
 * refusing more bytes than the record's size as soon as they arrive, then checks size and digest.
 */
async function receive(source: AsyncIterable<Buffer>, tmp: string, record: ManifestRecord, onBytes: (n: number) => void, from?: FailedRequest): Promise<void> {
  const hash = createAssetHash(record.algorithm);
  let size = 0;
  // Opened before the first byte: a stream that opened it itself could still create the file
  // after a refusal had ended the pipeline and the caller had removed `tmp` (a partial left).
  const file = await open(tmp, 'wx', FILE_MODE);
  await pipeline(
    source,
    async function* (chunks: AsyncIterable<Buffer>) {
      for await (const chunk of chunks) {
        size += chunk.length;
        onBytes(chunk.length);
        if (record.size !== null && size > record.size) throw new SizeMismatchError(record.size, size, from);
        hash.update(chunk);
        yield chunk;
      }
    },
    file.createWriteStream(),
  ).catch((err: unknown) => {
    throw from ? answerOf(err, from) : err; // a download cut mid-body names its request
  });
  await chmod(tmp, FILE_MODE); // the umask may have taken bits from the mode the file was created with
  if (record.size !== null && size !== record.size) throw new SizeMismatchError(record.size, size, from);
  const digest = hash.digest('hex');
  if (digest !== record.digest) throw new DigestMismatchError(`${record.algorithm}:${record.digest}`, `${record.algorithm}:${digest}`, from);
}

/**
 * A URL as the messages name it (they reach the terminal and the runner's log): credentials
 * hidden, and after a redirect the query string too (a pre-signed URL's signature).
 */
function shown(url: string, hop: number): string {
  return hop === 0 ? redactUrl(url) : redactUrlAndQuery(url);
}

/**
 * One GET, following redirects itself so the token goes to the first host only (like tooltool).
 * `cacheTimeoutMs` (a cache's answer): how long it may keep silent, and the floor under its rate.
 */
async function openAsset(url: string, options: FetchAssetsOptions, cacheTimeoutMs: number | undefined): Promise<{ res: Dispatcher.ResponseData; request: FailedRequest }> {
  let target = url;
  let token = options.token;
  const { dispatcher, ...limits } = limitedDispatch({ ...(options.dispatcher ? { dispatcher: options.dispatcher } : {}), ...(cacheTimeoutMs === undefined ? {} : cacheLimits(cacheTimeoutMs)) });
  for (let hop = 0; ; hop++) {
    const headers: Record<string, string> = { 'accept-encoding': 'identity', 'user-agent': USER_AGENT };
    if (token) headers.authorization = `Bearer ${token}`;
    let res: Dispatcher.ResponseData;
    try {
      res = await requestUrl(dispatcher, target, {
        method: 'GET',
        headers,
        signal: options.signal,
        ...limits,
      });
    } catch (err) {
      throw new UpstreamError(`GET ${shown(target, hop)}: ${errorMessage(err)}`, { cause: err, request: failedRequest('GET', target) });
    }
    const { statusCode } = res;
    // the URL that answered (a redirect's target): what a mismatch of its bytes names
    if (statusCode >= 200 && statusCode < 300) return { res, request: failedRequest('GET', target) };
    await res.body.dump().catch(() => undefined);
    const location = res.headers.location;
    if (statusCode >= 300 && statusCode < 400 && typeof location === 'string' && hop < MAX_REDIRECTS) {
      target = new URL(location, target).href;
      token = undefined;
      continue;
    }
    const message = `GET ${shown(target, hop)}: HTTP ${statusCode}`;
    const answered = failedRequest('GET', target);
    if (statusCode === 404) throw new NotFoundError(message, answered);
    if (statusCode === 401) throw new FleetError('FC_ERR_UNAUTHORIZED', message, { request: answered });
    if (statusCode === 403) throw new FleetError('FC_ERR_FORBIDDEN', message, { request: answered });
    throw new UpstreamError(message, { status: statusCode, request: answered });
  }
}

/**
 * Whether `path` already holds the record's content. A symlink is judged by its target, as
 * tooltool does (os.path.exists, open); a dangling or invalid one is then removed, never
 * written through (the new file is renamed over the link).
 */
async function isValid(path: string, record: ManifestRecord): Promise<boolean> {
  const link = await lstat(path).catch(() => undefined);
  if (!link) return false;
  const st = link.isSymbolicLink() ? await stat(path).catch(() => undefined) : link;
  if (!st) return false;
  if (!st.isFile()) throw new UsageError(`${path} exists and is not a regular file`);
  if (record.size !== null && st.size !== record.size) return false;
  return (await hashFile(path, record.algorithm)).digest === record.digest;
}

async function touch(path: string): Promise<void> {
  const now = new Date();
  await utimes(path, now, now);
}

class RecordFetch {
  readonly #record: ManifestRecord;
  readonly #options: FetchAssetsOptions;
  readonly #dest: string;
  /** Whether the download may be tried (tooltool's `fetch FILE...` limits that step only). */
  readonly #download: boolean;
  readonly result: AssetResult;

  constructor(record: ManifestRecord, options: FetchAssetsOptions, dest: string, download: boolean) {
    this.#record = record;
    this.#options = options;
    this.#dest = dest;
    this.#download = download;
    this.result = { filename: record.filename, size: record.size, digest: record.digest, bytesDownloaded: 0, bytesFromCache: 0, warnings: [], failedUrls: [] };
  }

  get #final(): string {
    return join(this.#dest, this.#record.filename);
  }

  /** Gets the file into place; throws when no source had it. */
  async run(): Promise<void> {
    const final = this.#final;
    if (await isValid(final, this.#record)) {
      this.result.source = 'present';
      return;
    }
    await rm(final, { force: true });
    if (await this.#fromCache()) return;
    if (!this.#download) {
      this.result.source = 'skipped';
      return;
    }
    await this.#fetch();
    await this.#storeInCache();
  }

  #progress(received: number, source: 'cache' | 'download', done: boolean): void {
    this.#options.onProgress?.({ filename: this.#record.filename, received, total: this.#record.size, source, done });
  }

  /** Copies `<cache>/<digest>` through a verified temp file; a bad entry is deleted (it self-heals). */
  async #fromCache(): Promise<boolean> {
    const folder = this.#options.cacheFolder;
    if (!folder) return false;
    const entry = join(folder, this.#record.digest);
    if (!(await lstat(entry).catch(() => undefined))?.isFile()) return false;
    let received = 0;
    try {
      await withPartialFile(this.#dest, this.#record.filename, async (tmp) => {
        await receive(createReadStream(entry), tmp, this.#record, (n) => this.#progress((received += n), 'cache', false));
        await rename(tmp, this.#final);
      });
    } catch (err) {
      await removeQuietly(entry);
      this.result.warnings.push(`cache folder entry ${entry} was invalid and was removed: ${errorMessage(err)}`);
      return false;
    }
    await touch(entry).catch(() => undefined);
    this.#progress(received, 'cache', true);
    this.result.source = 'cache';
    this.result.bytesFromCache = received;
    return true;
  }

  async #fetch(): Promise<void> {
    const failures: FleetError[] = [];
    if (this.#options.urls.length === 0) throw new UsageError(`${this.#record.filename}: not present and no --url to fetch it from`);
    for (const [index, base] of this.#options.urls.entries()) {
      const isLast = index === this.#options.urls.length - 1;
      // tooltool appends the region as given, not percent-encoded: the same query reaches the server
      const url = assetUrl(base, this.#record) + (this.#options.region === undefined ? '' : `?region=${this.#options.region}`);
      let received = 0;
      try {
        await withPartialFile(this.#dest, this.#record.filename, async (tmp) => {
          const { res, request } = await openAsset(url, this.#options, isLast ? undefined : this.#options.cacheTimeoutMs);
          await receive(res.body, tmp, this.#record, (n) => {
            received += n;
            this.#progress(received, 'download', false);
          }, request);
          await rename(tmp, this.#final);
        });
        this.#progress(received, 'download', true);
        this.result.source = 'download';
        this.result.url = redactUrl(base);
        this.result.bytesDownloaded += received;
        return;
      } catch (err) {
        this.result.bytesDownloaded += received;
        if (this.#options.signal?.aborted) throw toFleetError(err);
        const fe = toFleetError(err);
        failures.push(fe);
        this.result.failedUrls.push({ url: redactUrl(base), code: fe.code });
        // A failure of the request asked names its URL already: once (a redirect's target's names another)
        this.result.warnings.push(fe.request?.url === redactUrlAndQuery(url) ? fe.message : `${redactUrl(url)}: ${fe.message}`);
      }
    }
    // The most telling failure decides the code: bad content, then auth, then the rest.
    const rank = (e: FleetError): number =>
      e.code === 'FC_ERR_DIGEST_MISMATCH' || e.code === 'FC_ERR_SIZE_MISMATCH' ? 0 : e.code === 'FC_ERR_FORBIDDEN' || e.code === 'FC_ERR_UNAUTHORIZED' ? 1 : e.code === 'FC_ERR_NOT_FOUND' ? 3 : 2;
    const worst = [...failures].sort((a, b) => rank(a) - rank(b))[0]!;
    throw new FleetError(worst.code, `${this.#record.filename}: every URL failed: ${quotedReasons(failures.map((f) => f.message))}`, { cause: worst });
  }

  /** Adds the downloaded file to the cache folder (0700 dir, a 0600 copy, rename-committed); failures only warn. */
  async #storeInCache(): Promise<void> {
    const folder = this.#options.cacheFolder;
    if (!folder) return;
    const entry = join(folder, this.#record.digest);
    try {
      await mkdir(folder, { recursive: true, mode: 0o700 });
      await withPartialFile(folder, this.#record.digest, async (tmp) => {
        await copyFile(this.#final, tmp, constants.COPYFILE_EXCL);
        await chmod(tmp, FILE_MODE); // a copy takes the source's mode; the entry is 0600 whatever that is
        await rename(tmp, entry);
      });
      await touch(entry);
    } catch (err) {
      this.result.warnings.push(`cannot add to cache folder ${folder}: ${errorMessage(err)}`);
    }
  }

  async unpack(): Promise<void> {
    if (!this.#record.unpack || this.result.error || this.result.source === 'skipped') return;
    try {
      this.result.unpacked = await unpackArchive(this.#final, this.#record.filename, this.#dest);
    } catch (err) {
      this.result.error = toFleetError(err);
    }
  }
}

/** A record no file can match: failed when it was to be downloaded, else skipped with its error as a warning. */
function invalidResult(record: InvalidRecord, download: boolean): AssetResult {
  const result: AssetResult = { filename: record.filename, size: null, digest: '', bytesDownloaded: 0, bytesFromCache: 0, warnings: [], failedUrls: [] };
  if (download) result.error = record.error;
  else {
    result.source = 'skipped';
    result.warnings.push(record.error.message);
  }
  return result;
}

/**
 * Fetches a manifest's records: every record is checked, taken from the cache folder and
 * unpacked, only the selected ones (`files`, default all) are downloaded. Never throws for
 * a single file: each result carries its error (a record with a malformed size, algorithm
 * or digest too), in manifest order, and `failed` counts them. Throws only for
 * a bad manifest, an unknown selected name or an abort.
 */
export async function fetchAssets(options: FetchAssetsOptions): Promise<FetchAssetsResult> {
  const manifest = await readManifest(options.manifestPath, { keepInvalid: true });
  const { records } = manifest;
  let wanted: ReadonlySet<string> | undefined;
  let unknownFiles: string[] = [];
  if (options.files && options.files.length > 0) {
    const known = new Set([...records, ...manifest.invalid].map((r) => r.filename));
    unknownFiles = options.files.filter((f) => !known.has(f));
    wanted = new Set(options.files);
  }
  const dest = options.dest ?? process.cwd();
  await mkdir(dest, { recursive: true });
  // what fetches killed outright left (partial-file.ts)
  for (const dir of [dest, ...(options.cacheFolder ? [options.cacheFolder] : [])]) removeAbandonedPartials(dir);
  const fetches = records.map((r) => new RecordFetch(r, options, dest, wanted?.has(r.filename) ?? true));
  for (const f of fetches) {
    try {
      await f.run();
    } catch (err) {
      if (options.signal?.aborted) throw toFleetError(err);
      f.result.error = toFleetError(err);
    }
  }
  // Like tooltool: unpack after every file is in place (also files already present).
  for (const f of fetches) await f.unpack();
  const invalid = manifest.invalid.map((r) => invalidResult(r, wanted?.has(r.filename) ?? true));
  const files = inManifestOrder(manifest, fetches.map((f) => f.result), invalid);
  return {
    files,
    failed: files.filter((f) => f.error).length,
    bytesDownloaded: files.reduce((n, f) => n + f.bytesDownloaded, 0),
    bytesFromCache: files.reduce((n, f) => n + f.bytesFromCache, 0),
    dropped: manifest.dropped,
    manifestWarnings: manifest.warnings,
    unknownFiles,
  };
}
