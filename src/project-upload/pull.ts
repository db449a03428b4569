// Rebuilding a run's project tree on a machine: fetch the manifest, the base and the delta
// by digest (through a regional cache or the origin), apply the delta, check the result's
// sha256 and size against the manifest, and only then unpack. A mismatch anywhere is an
// error and nothing is unpacked.
import { createReadStream } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { httpGetJson, joinUrl, type CacheLimits, type Progress, type RequestOptions } from '../client/http.js';
import { deltaChunks } from '../delta/compress.js';
import { decodeVcdiffToFile } from '../delta/vcdiff-decode.js';
import { DigestMismatchError, FleetError, isNoRoom, noRoomError, NotFoundError, SizeMismatchError } from '../errors.js';
import { unpackTar } from '../pack/unpack.js';
import { redactUrl } from '../redact-url.js';
import { parseRunManifest, type RunManifest } from './manifest.js';
import { withTempDir } from './temp-dir.js';
import { downloadBlob, UNSTATED_BASE_GROWTH, type PlainBound } from './transfer.js';

interface PullOptions {
  readonly project: string;
  readonly run: string;
  /** A cache or the origin; both serve /projects and /cas. */
  readonly from: string;
  readonly dir: string;
  readonly token?: string;
  /**
   * Ask for the blobs with `Cache-Control: no-cache`: a cache then hashes its stored copy
   * again before serving it, and fetches it anew when it is damaged (src/cache/namespace.ts).
   */
  readonly recheck?: boolean;
  /** Told of the downloads' bytes (a bar on a terminal). */
  readonly progress?: Progress;
  /** What `from` is allowed, a cache's (cacheLimits): the client's defaults otherwise. */
  readonly limits?: CacheLimits;
}

export interface PullResult {
  readonly manifest: RunManifest;
  /** Bytes fetched: manifest excluded, base plus delta. */
  readonly bytesReceived: number;
  readonly entries: number;
}

async function fetchRunManifest(from: string, project: string, run: string, http: RequestOptions = {}): Promise<RunManifest> {
  const url = joinUrl(from, `/projects/${encodeURIComponent(project)}/runs/${encodeURIComponent(run)}`);
  const manifest = parseRunManifest(await httpGetJson<unknown>(url, http), redactUrl(url));
  // Every digest the pull checks comes from the manifest: one of another run (a cache that
  // answers for another URL) would be rebuilt and unpacked, verified, as if it were this one.
  if (manifest.project !== project || manifest.run !== run) {
    throw new FleetError('FC_ERR_BAD_REQUEST', `${redactUrl(url)}: not the run manifest asked for (it names project ${JSON.stringify(manifest.project)}, run ${JSON.stringify(manifest.run)})`);
  }
  return manifest;
}

export async function pullProject(options: PullOptions): Promise<PullResult> {
  const http: RequestOptions = {
    ...(options.token ? { token: options.token } : {}),
    ...(options.progress ? { progress: options.progress } : {}),
    ...options.limits,
  };
  await refuseNonEmpty(options.dir);
  const manifest = await fetchRunManifest(options.from, options.project, options.run, http);
  const blobs: RequestOptions = options.recheck ? { ...http, headers: { 'cache-control': 'no-cache' } } : http;
  return withTempDir('fleetcache-pull-', async (work) => {
    // The tars and the tree are often on different disks (TMPDIR or the agent's workDir, the
    // project path): a full one is named, or the message ("ENOSPC …, write") does not say which.
    const { tarFile, bytesReceived } = await namingFullDisk(dirname(work), "for the pull's base, delta and tar (its working directory: TMPDIR, or the agent's workDir)", () => rebuildTar(options.from, manifest, blobs, work));
    // a failed unpack removes what it made, and only that (unpackTar)
    const { entries } = await namingFullDisk(options.dir, 'to unpack the project into', () => unpackTar(createReadStream(tarFile), options.dir));
    return { manifest, bytesReceived, entries };
  });
}

/** Downloads base and delta into `work` and rebuilds the run's tar there, verified; the base itself when the run has no delta. */
async function rebuildTar(from: string, manifest: RunManifest, blobs: RequestOptions, work: string): Promise<{ tarFile: string; bytesReceived: number }> {
  const baseFile = join(work, 'base.tar');
  const base = await downloadBlob(from, manifest.base.digest, manifest.base.size, baseFile, { ...blobs, gunzip: true, label: 'base', plainBound: basePlainBound(manifest) })
    .catch(namingMissing(manifest, `base ${manifest.base.id}`, from));
  if (!manifest.delta) {
    checkResult(manifest, base.written.size, base.written.digest);
    return { tarFile: baseFile, bytesReceived: base.received };
  }
  const deltaFile = join(work, 'delta');
  const delta = await downloadBlob(from, manifest.delta.digest, manifest.delta.size, deltaFile, { ...blobs, label: 'delta' }).catch(namingMissing(manifest, 'delta', from));
  // decompressed as it is decoded, one window in memory; the sizes the manifest states
  // bound both steps: a few bytes cannot fill the disk
  const vcdiff = deltaChunks(deltaFile, manifest.delta.compression, manifest.delta.vcdiffSize);
  const tarFile = join(work, 'result.tar');
  const decoded = await decodeVcdiffToFile(baseFile, vcdiff, tarFile, [], manifest.result.size);
  checkResult(manifest, decoded.size, `sha256:${decoded.digests['sha256']}`);
  // Base and delta are not needed any more: while the tree is unpacked, the disk holds the tar and the tree, not them too.
  await Promise.all([rm(baseFile), rm(deltaFile)]);
  return { tarFile, bytesReceived: base.received + delta.received };
}

/**
 * The most a run's base may inflate to: the plain tar's size the manifest states, the run's
 * own tar when there is no delta (the base is the result), or else (a manifest of an older
 * push, which did not record it) UNSTATED_BASE_GROWTH times the run's tar.
 */
function basePlainBound(manifest: RunManifest): PlainBound {
  if (!manifest.delta) return { bytes: manifest.result.size, code: 'FC_ERR_SIZE_MISMATCH', what: "the size of the run's tar, which is its base" };
  if (manifest.base.plainSize !== undefined) return { bytes: manifest.base.plainSize, code: 'FC_ERR_SIZE_MISMATCH', what: 'the size of its tar the run manifest states' };
  const bytes = UNSTATED_BASE_GROWTH * manifest.result.size;
  return { bytes, code: 'FC_ERR_TOO_LARGE', what: `${UNSTATED_BASE_GROWTH} times the run's tar, the limit for a manifest that does not state its base's size (push the run again: a push now records it)` };
}

/**
 * A 404 for a blob the run manifest names (the origin lost it since the push: removed by
 * hand, or as damaged) said as that, naming the run and which of its blobs, rather than as a
 * bare URL and digest; still FC_ERR_NOT_FOUND, so that a machine tries its next URL.
 */
function namingMissing(manifest: RunManifest, what: string, from: string): (err: unknown) => never {
  return (err) => {
    if (!(err instanceof NotFoundError)) throw err;
    throw new NotFoundError(`the ${what} of run ${manifest.run} (project ${manifest.project}) is not at ${redactUrl(from)}, which no longer has it (${err.message}): the run cannot be pulled; push the project again`);
  };
}

/** Runs `write`; a write refused for lack of room (a full disk, a quota) becomes an error naming `dir` and `what` it was written for. */
async function namingFullDisk<T>(dir: string, what: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (err) {
    if (!isNoRoom(err)) throw err;
    throw noRoomError(`in ${dir} ${what}`, err);
  }
}

/** Fails before any transfer when the target has content (unpackTar checks again). */
async function refuseNonEmpty(dir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch {
    return; // missing: unpackTar creates it
  }
  if (entries.length > 0) throw new FleetError('FC_ERR_BAD_NAME', `${dir} is not empty; refusing to unpack into it (a pull killed midway leaves part of a tree there: remove it, then pull again)`);
}

function checkResult(manifest: RunManifest, size: number, digest: string): void {
  if (size !== manifest.result.size) throw new SizeMismatchError(manifest.result.size, size);
  if (digest !== manifest.result.digest) throw new DigestMismatchError(manifest.result.digest, digest);
}
