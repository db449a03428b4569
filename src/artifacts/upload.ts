// Artifact upload (run by the machine agent): each requested path (relative to the task directory) is
// walked, every regular file is streamed with a PUT to /artifacts/<run>/<job…>/<path…>
// (hashed on the way and checked against the server's answer), then the job's index
// lists what was stored. Each PUT states the file's digest, checked before anything is stored. Every path is checked before the first byte is sent: absolute
// paths and paths that escape the directory (lexically or through a symlink) are refused.
import { createReadStream } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { httpPut, type CacheLimits } from '../client/http.js';
import { DigestMismatchError, failedRequest, FleetError, withDetails } from '../errors.js';
import { hashingTap, sha256File } from '../store/hashing.js';
import { artifactUrl, INDEX_FORMAT, INDEX_NAME, indexUrl, type ArtifactIndex } from './names.js';

interface UploadArtifactsOptions {
  /** The machine's cache (or the origin). */
  readonly url: string;
  readonly token?: string;
  readonly run: string;
  readonly job: string;
  /** The directory artifact paths are relative to (the task directory). */
  readonly cwd: string;
  readonly paths: readonly string[];
  /** Parallel PUTs (default 4). */
  readonly concurrency?: number;
  /**
   * Files an earlier try of this upload stored (through another URL, before it failed): not
   * sent again while their content is the same, only listed in the index.
   */
  readonly stored?: readonly ArtifactEntry[];
  /** What `url` is allowed, a cache's followed by another URL (cacheLimits): the client's defaults otherwise. */
  readonly limits?: CacheLimits;
}

type ArtifactEntry = ArtifactIndex['files'][number];

interface UploadArtifactsResult {
  readonly files: readonly ArtifactEntry[];
  /** The bytes uploaded: the files' and their index's (as fetchArtifacts counts what it fetched). */
  readonly bytes: number;
  /** Requested paths that do not exist (a failed task may not have produced them). */
  readonly missing: readonly string[];
  /** Entries inside walked directories that are not regular files (symlinks, sockets…). */
  readonly skipped: readonly string[];
}

interface Collected {
  /** Relative path with "/" separators → absolute file. */
  readonly files: Map<string, string>;
  readonly missing: string[];
  readonly skipped: string[];
}

function isInside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

function toSlashes(rel: string): string {
  return rel.split(sep).join('/');
}

async function walk(dir: string, rel: string, out: Collected): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    const childRel = rel ? `${rel}/${entry.name}` : entry.name;
    if (entry.isDirectory()) await walk(join(dir, entry.name), childRel, out);
    else if (entry.isFile()) out.files.set(childRel, join(dir, entry.name));
    else out.skipped.push(childRel);
  }
}

/** Resolves and checks every requested path; throws before anything is uploaded. */
async function collectArtifacts(cwd: string, paths: readonly string[]): Promise<Collected> {
  const root = await realpath(cwd);
  const out: Collected = { files: new Map(), missing: [], skipped: [] };
  for (const requested of paths) {
    if (requested === '' || isAbsolute(requested)) {
      throw new FleetError('FC_ERR_BAD_NAME', `artifact path "${requested}": must be relative to the task directory`);
    }
    const full = resolve(root, requested);
    if (!isInside(root, full)) throw new FleetError('FC_ERR_BAD_NAME', `artifact path "${requested}" escapes the task directory`);
    let real: string;
    try {
      real = await realpath(full);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        out.missing.push(requested);
        continue;
      }
      throw err;
    }
    if (!isInside(root, real)) throw new FleetError('FC_ERR_BAD_NAME', `artifact path "${requested}" escapes the task directory through a symlink`);
    const rel = toSlashes(relative(root, full));
    const info = await stat(real);
    if (info.isDirectory()) await walk(real, rel, out);
    else if (info.isFile()) out.files.set(rel, real);
    else out.skipped.push(rel);
  }
  // A job's name may hold slashes, so any <path>/_index.json would read as the index of a job
  // named <job>/<path> (artifacts get RUN/JOB/PATH tries the longest prefix first).
  const clash = [...out.files.keys()].find((rel) => rel === INDEX_NAME || rel.endsWith(`/${INDEX_NAME}`));
  if (clash !== undefined) throw new FleetError('FC_ERR_BAD_NAME', `artifact "${clash}": a file named ${INDEX_NAME} clashes with the job indexes (rename it or pack it in an archive)`);
  return out;
}

/**
 * PUTs one file, stating its digest (X-Fleetcache-Digest): the origin refuses a body that
 * does not match before it stores the blob or publishes the name (bytes damaged on the way,
 * through a cache). The file is read twice, first to hash it (`stated`): a file that changed
 * between the two reads is refused the same way, and reported as such.
 */
async function putFile(url: string, file: string, stated: { size: number; digest: string }, token: string | undefined, limits: CacheLimits | undefined): Promise<void> {
  const { tap, result } = hashingTap();
  const source = createReadStream(file);
  source.on('error', (err) => tap.destroy(err));
  source.pipe(tap);
  const answer = await httpPut<{ digest?: string; size?: number }>(url, tap, {
    ...(token ? { token } : {}),
    ...limits,
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(stated.size), 'x-fleetcache-digest': stated.digest },
  }).catch((err: unknown) => {
    const sent = result();
    if (err instanceof FleetError && (err.code === 'FC_ERR_DIGEST_MISMATCH' || err.code === 'FC_ERR_SIZE_MISMATCH') && sent.digest !== stated.digest) {
      throw new FleetError('FC_ERR_DIGEST_MISMATCH', `artifact ${file} changed while it was uploaded (nothing was stored): ${err.message}`, { cause: err });
    }
    throw err;
  });
  // The server hashed what it received and checked it against the stated digest.
  if (answer.digest !== undefined && answer.digest !== stated.digest) throw new DigestMismatchError(stated.digest, answer.digest, failedRequest('PUT', url));
}

export async function uploadArtifacts(options: UploadArtifactsOptions): Promise<UploadArtifactsResult> {
  const collected = await collectArtifacts(options.cwd, options.paths);
  const queue = [...collected.files.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  // Validate every name (segment rules of the namespace) before the first PUT.
  const jobs = queue.map(([path, file]) => ({ path, file, url: artifactUrl(options.url, options.run, options.job, path) }));
  const files: ArtifactEntry[] = new Array<ArtifactEntry>(jobs.length);
  const stored = new Map((options.stored ?? []).map((entry) => [entry.path, entry]));
  let next = 0;
  let failed = false;
  const worker = async () => {
    // after a failure no file is started, and those on their way finish: the error lists every stored one
    while (next < jobs.length && !failed) {
      const i = next++;
      const job = jobs[i]!;
      const stated = await sha256File(job.file);
      const earlier = stored.get(job.path);
      if (earlier?.digest !== stated.digest || earlier.size !== stated.size) await putFile(job.url, job.file, stated, options.token, options.limits);
      files[i] = { path: job.path, size: stated.size, digest: stated.digest };
    }
  };
  const workers = await Promise.allSettled(Array.from({ length: Math.min(options.concurrency ?? 4, Math.max(jobs.length, 1)) }, () => worker().catch((err: unknown) => {
    failed = true;
    throw err;
  })));
  const index = JSON.stringify({ format: INDEX_FORMAT, run: options.run, job: options.job, files } satisfies ArtifactIndex);
  try {
    const failure = workers.find((w) => w.status === 'rejected');
    if (failure) throw failure.reason;
    await httpPut(indexUrl(options.url, options.run, options.job), index, {
      ...(options.token ? { token: options.token } : {}),
      ...options.limits,
      headers: { 'content-type': 'application/json' },
    });
  } catch (err) {
    // a try through the next URL sends only what is not stored yet
    throw withDetails(err, { stored: files.filter(Boolean) });
  }
  return { files, bytes: files.reduce((n, f) => n + f.size, Buffer.byteLength(index)), missing: collected.missing, skipped: collected.skipped };
}
