// Fetching a job's artifacts from any cache or the origin into DIR/<job name>/<path>, as
// spread's -artifacts lays them out. The job's _index.json says what exists; every file is
// streamed into a temp file beside its target, checked against the index (size, sha256)
// and renamed, so a partial or wrong file never carries the real name (../partial-file.ts: a
// download cut by a signal or a kill leaves none behind for long). Index paths are
// validated segment by segment, and every directory below DIR is checked with lstat before
// anything is created (pack/safe-path.ts): a symlink on the way is refused, so nothing is
// created or written outside DIR.
import { createWriteStream } from 'node:fs';
import { mkdir, realpath, rename } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { httpGet, httpGetJson, httpGetJsonSized, type CacheLimits, type RequestOptions } from '../client/http.js';
import { answerOf, DigestMismatchError, failedRequest, FleetError, isDamagedBytes, NotFoundError, SizeMismatchError } from '../errors.js';
import { isInside, walkDirs } from '../pack/safe-path.js';
import { removeAbandonedPartials, withPartialFile } from '../partial-file.js';
import { redactUrl } from '../redact-url.js';
import { hashingTap } from '../store/hashing.js';
import { artifactUrl, indexUrl, nameSegments, parseArtifactIndex, type ArtifactIndex } from './names.js';

interface ArtifactRef {
  readonly run: string;
  readonly job: string;
  /** A file or directory inside the job's artifacts; undefined for all of them. */
  readonly path?: string;
  readonly index: ArtifactIndex;
}

interface DownloadedArtifact {
  readonly path: string;
  readonly size: number;
  readonly file: string;
}

/**
 * Splits "RUN/JOB[/PATH]": job names contain slashes, so the longest prefix whose
 * _index.json exists is the job and the rest is the path.
 */
export async function resolveArtifactRef(from: string, ref: string, http: RequestOptions = {}): Promise<ArtifactRef> {
  const [run, ...rest] = nameSegments(ref.replace(/\/+$/, ''), 'artifact reference');
  if (run === undefined || rest.length === 0) throw new FleetError('FC_ERR_USAGE', `artifact reference "${ref}": expected RUN/JOB[/PATH]`);
  for (let k = rest.length; k >= 1; k--) {
    const job = rest.slice(0, k).join('/');
    const url = indexUrl(from, run, job);
    let raw: unknown;
    try {
      raw = await httpGetJson<unknown>(url, http);
    } catch (err) {
      if (err instanceof NotFoundError) continue;
      throw err;
    }
    const path = rest.slice(k).join('/');
    return { run, job, index: parseArtifactIndex(raw, url), ...(path ? { path } : {}) };
  }
  throw new NotFoundError(`no artifacts for "${ref}" at ${redactUrl(from)} (no _index.json for any job prefix)`);
}

/**
 * One file into `target`, checked against its index entry. Bytes that do not match are asked
 * for once more with `Cache-Control: no-cache`: a cache in between then hashes its stored copy
 * (damaged on its disk, it is dropped and fetched again) instead of serving it again.
 */
async function downloadOne(url: string, entry: ArtifactIndex['files'][number], target: string, http: RequestOptions): Promise<void> {
  await downloadOnce(url, entry, target, http).catch((err: unknown) => {
    if (!isDamagedBytes(err)) throw err;
    return downloadOnce(url, entry, target, { ...http, headers: { ...http.headers, 'cache-control': 'no-cache' } });
  });
}

async function downloadOnce(url: string, entry: ArtifactIndex['files'][number], target: string, http: RequestOptions): Promise<void> {
  await withPartialFile(dirname(target), basename(target), async (temp) => {
    // named with the request: which cache, or the origin, sent the wrong bytes
    const request = failedRequest('GET', url);
    const res = await httpGet(url, http);
    // more bytes than the index states are refused as they come, not once they filled the disk
    const { tap, result } = hashingTap(http.progress?.(entry.path, entry.size), entry.size);
    await pipeline(res.body, tap, createWriteStream(temp, { flags: 'wx' })).catch((err: unknown) => {
      throw answerOf(err, request);
    });
    const got = result();
    if (got.size !== entry.size) throw new SizeMismatchError(entry.size, got.size, request);
    if (got.digest !== entry.digest) throw new DigestMismatchError(entry.digest, got.digest, request);
    await rename(temp, target);
  });
}

/** Downloads the referenced artifacts into `dir`/<job name>/; returns what was written. */
export async function downloadArtifacts(from: string, ref: ArtifactRef, dir: string, http: RequestOptions = {}): Promise<DownloadedArtifact[]> {
  const selected = ref.path === undefined
    ? ref.index.files
    : ref.index.files.filter((f) => f.path === ref.path || f.path.startsWith(`${ref.path}/`));
  if (ref.path !== undefined && selected.length === 0) {
    throw new NotFoundError(`artifact "${ref.path}" is not in the index of ${ref.run}/${ref.job}`);
  }
  const jobParts = nameSegments(ref.job, 'job');
  const wanted = selected.map((entry) => ({ entry, parts: [...jobParts, ...nameSegments(entry.path, 'artifact path')] }));
  await mkdir(dir, { recursive: true });
  const realDir = await realpath(dir);
  const walk = (path: string, parts: readonly string[], create: boolean): Promise<string[]> =>
    walkDirs(realDir, parts.slice(0, -1), {
      create,
      refuse: (why) => new FleetError('FC_ERR_BAD_NAME', `artifact path "${path}" is not written into ${dir}: ${why}`),
    });
  // Every path is checked before anything is created: an existing symlink on the way
  // (DIR/job/sub -> /elsewhere) must not see directories made behind it.
  for (const { entry, parts } of wanted) await walk(entry.path, parts, false);
  const out: DownloadedArtifact[] = [];
  const swept = new Set<string>(); // each directory's leftovers looked for once, not once per file in it
  for (const { entry, parts } of wanted) {
    const target = join(realDir, ...parts);
    if (!isInside(realDir, target)) throw new FleetError('FC_ERR_BAD_NAME', `artifact path "${entry.path}" escapes ${dir}`);
    await walk(entry.path, parts, true); // again, creating: the tree may have changed while downloading
    if (!swept.has(dirname(target))) {
      swept.add(dirname(target));
      removeAbandonedPartials(dirname(target));
    }
    await downloadOne(artifactUrl(from, ref.run, ref.job, entry.path), entry, target, http);
    out.push({ path: entry.path, size: entry.size, file: target });
  }
  return out;
}

interface FetchArtifactsOptions {
  readonly from: string;
  readonly run: string;
  /** The job name exactly (slashes allowed); no prefix guessing as for RUN/JOB/PATH. */
  readonly job: string;
  /** A file or directory inside the job's artifacts; default: all of them. */
  readonly path?: string;
  /** Files land in dest/<job name>/<path>. */
  readonly dest: string;
  readonly token?: string;
  /** What `from` is allowed, a cache's followed by another URL (cacheLimits): the client's defaults otherwise. */
  readonly limits?: CacheLimits;
}

/**
 * One job's artifacts (what spread's -artifacts DIR does at the end of a task): the files
 * written, and the bytes fetched for them (their index included).
 */
export async function fetchArtifacts(options: FetchArtifactsOptions): Promise<{ files: DownloadedArtifact[]; bytes: number }> {
  const http: RequestOptions = { ...options.limits, ...(options.token ? { token: options.token } : {}) };
  const url = indexUrl(options.from, options.run, options.job);
  const got = await httpGetJsonSized<unknown>(url, http);
  const index = parseArtifactIndex(got.value, url);
  const ref: ArtifactRef = { run: options.run, job: options.job, index, ...(options.path ? { path: options.path } : {}) };
  const files = await downloadArtifacts(options.from, ref, options.dest, http);
  return { files, bytes: got.bytes + files.reduce((n, f) => n + f.size, 0) };
}
