// Uploading a project run: pack deterministically, pick the base (among the newest few the
// origin has) that sends the fewest bytes over the slow links (its delta, up once and down
// to each region, plus the whole base to each region whose cache lacks it), upload only
// that delta and a run manifest. The
// first upload, or a delta above 10% of the gzip-compressed tar, stores the tar as a new base;
// so does a push whose every candidate base is more than twice the size of that tar.
// Bases are kept in a local directory by digest (base-cache.ts), so the slow link is crossed
// once per base; each cached tar is verified against its recorded sha256 whenever it is used.
import { createReadStream } from 'node:fs';
import { copyFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { httpGetJson, httpHead, httpPut, joinUrl, type Progress, type RequestOptions } from '../client/http.js';
import { compressDelta, DEFAULT_COMPRESSION, QuickSizeCounter, type Compression } from '../delta/compress.js';
import { encodeDelta, type OutputWatch } from '../delta/xdelta.js';
import { DAMAGED_CODES, DigestMismatchError, failedRequest, FleetError, NotFoundError, UpstreamError, type ErrorCode } from '../errors.js';
import { parseSize } from '../config/units.js';
import { packToFile } from '../pack/packer.js';
import { checkRepackOutput, runRepack, type RepackOptions } from '../pack/repack.js';
import type { PackRules } from '../pack/rules.js';
import { casPath, parseDigestString } from '../store/digest.js';
import { MANIFEST_FORMAT, type RunManifest } from './manifest.js';
import { writeAtomically } from './atomic-file.js';
import { baseCachePath, cachedDigest, DEFAULT_BASE_CACHE_SIZE, markUsed, pruneBaseCache, recordCachedDigest, type PruneResult } from './base-cache.js';
import { gzipFile } from './gzip-thread.js';
import { withTempDir } from './temp-dir.js';
import { cachesLacking } from './cache-holdings.js';
import { cannotBeChosen } from './candidate-stop.js';
import { downloadBlob, UNSTATED_BASE_GROWTH, type PlainBound } from './transfer.js';
import { sha256File } from '../store/hashing.js';
import { checkSegment } from '../store/safe-name.js';
import { redactUrl } from '../redact-url.js';
import { makeDir } from '../path-checks.js';
import type { Grant } from '../http/auth.js';

/** A delta above this share of the gzip-compressed tar triggers a new base. */
const REBASE_RATIO = 0.1;
/** How many of the newest bases are tried. */
const BASE_CANDIDATES = 3;
/**
 * A base larger than this many times the compressed tar is not used: every machine's pull
 * fetches the whole base, and a project that shrank would keep its old size in every run, a
 * delta against its content being tiny.
 */
const MAX_BASE_GROWTH = 2;

interface BaseInfo {
  readonly id: string;
  readonly digest: string;
  readonly size: number;
  readonly created: number;
  /** The size of its plain tar, as its upload stated it (absent from bases pushed before push sent it). */
  readonly plainSize?: number;
}

interface PushOptions {
  readonly dir: string;
  readonly project: string;
  readonly origin: string;
  readonly token?: string;
  /**
   * Files of credentials the caller reads, never packed: the file `token` was read from, the
   * SSH keys of the run's backends. Kept in the tree (beside spread.yaml, as `fleetcache:
   * tokenFile:` and a backend's `key:` read them), the origin's write token went to every
   * machine, whose tasks a run token keeps from writing, and with a key into a base anyone
   * reading the origin reads.
   */
  readonly secretFiles?: readonly string[];
  /** Run id; default: UTC timestamp plus random suffix. */
  readonly run?: string;
  /** Where bases are kept by digest between runs. */
  readonly baseCache: string;
  /**
   * The cache each region's machines pull through (the nearest of the region's), asked which
   * candidate bases they hold: a candidate one lacks costs its whole compressed base over
   * that region's slow link. None: candidates are ranked by their delta alone.
   */
  readonly regionCaches?: readonly string[];
  /** Bytes the base cache keeps at most once the push is done (default DEFAULT_BASE_CACHE_SIZE). */
  readonly baseCacheSize?: number;
  readonly rules?: PackRules;
  readonly compression?: Compression;
  readonly level?: number;
  /** spread's repack script: gets the packed tar on fd 3, writes the tar to upload on fd 4. */
  readonly repack?: string;
  /** Its environment and timeouts (it always runs in `dir`). */
  readonly repackOptions?: Omit<RepackOptions, 'cwd' | 'signal'>;
  /**
   * Stops the push: between its steps, the pack's entries and the encode's windows, and at
   * once for a transfer or the repack script (killed). Nothing is left that a run could use:
   * the run manifest is the last thing written.
   */
  readonly signal?: AbortSignal;
  /** Told of the transfers' bytes (a bar on a terminal). */
  readonly progress?: Progress;
  /**
   * Internal, for tests (not a user's setting): the largest target window of the encodes
   * (default WINDOW_BYTES). An encode stops only at the end of a window, so a test of the
   * stop rules on trees of a few MiB lowers it.
   */
  readonly windowBytes?: number;
}

export interface PushResult {
  readonly run: string;
  readonly manifest: RunManifest;
  /** Bytes PUT to the origin (delta or base, plus the manifest). */
  readonly bytesSent: number;
  /** What a full upload would have sent: the gzip-compressed tar, as spread sends it. */
  readonly fullUploadBytes: number;
  /** The run manifest's body: uploaded once, and downloaded by every machine before its base and delta. */
  readonly manifestBytes: number;
  /** Bytes downloaded to fill the local base cache. */
  readonly bytesReceived: number;
  readonly rebased: boolean;
  /** What the base cache's bound removed after the push. */
  readonly pruned: PruneResult;
  /** Paths of the tree left out: not a file, directory or symlink (a FIFO, a socket, a device). */
  readonly skipped: readonly string[];
  /** Bases at the origin passed over: their blob is missing or damaged there (UNUSABLE_BASE_CODES). */
  readonly unusableBases: readonly UnusableBase[];
  /** The encodes against candidate bases, in the order tried. */
  readonly encodes: readonly CandidateEncode[];
  /**
   * Compression passes run over the VCDIFFs of the deltas compressed for upload (compressDelta's):
   * the fast pass counted as each VCDIFF was written is not run again.
   */
  readonly compressionPasses: number;
}

/** A candidate whose encode was whole, with its rank. */
interface Ranked {
  readonly base: BaseInfo;
  readonly baseSize: number;
  /** Its VCDIFF. */
  readonly file: string;
  readonly vcdiffSize: number;
  /** Its fast pass's size, or 0 when its raw VCDIFF is under the re-base bound. */
  readonly quick: number;
  /** Its fast pass's size, counted as its VCDIFF was written. */
  readonly fastPass: number;
  /** The bytes it sends over the slow links (the ranking's). */
  readonly cost: number;
}

/** What the encode against a candidate base wrote. */
interface CandidateEncode {
  readonly id: string;
  /** Bytes of raw VCDIFF: the whole delta, or where the encode stopped. */
  readonly vcdiffSize: number;
  /** False when it stopped once the candidate could no longer be chosen. */
  readonly complete: boolean;
}

/** A base passed over, and why. */
interface UnusableBase {
  readonly id: string;
  readonly reason: string;
}

/**
 * Why a candidate base cannot be downloaded that no retry mends: its blob is gone from the
 * origin, or its bytes there are not the ones recorded. The push passes over it (the next
 * candidate, or a new base) rather than fail every push of the project until someone repairs
 * the origin; its runs' pulls fail, and the origin's verify reports it (deploy/OPERATIONS.md).
 */
const UNUSABLE_BASE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['FC_ERR_NOT_FOUND', ...DAMAGED_CODES]);

/** What push and run say of a base passed over (PushResult.unusableBases). */
export function unusableBaseLine(base: UnusableBase): string {
  return `base ${base.id} at the origin cannot be used, passed over (its runs cannot be pulled; "fleetcache verify" at the origin lists damaged blobs): ${base.reason}`;
}

function stamp(): string {
  return new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

/**
 * VCDIFF of `target` against `base`, read from the local base cache, into the file `output`;
 * resolves to its size, and whether it is whole (the encode stops once `watchOutput`'s watch says so).
 * A base fetched is inflated to the plain size its record at the origin states at most, or
 * to UNSTATED_BASE_GROWTH times the target's size for a base pushed before push stated it,
 * or whose record states more:
 * a gzip bomb there fails with FC_ERR_SIZE_MISMATCH, and is passed over, before it fills
 * the disk. The cached tar is checked against its recorded digest while the
 * encode reads it; a missing or damaged copy (a crash, a disk error, an edit) is fetched
 * again, so no delta is made against wrong bytes.
 */
async function encodeAgainstBase(options: PushOptions, base: BaseInfo, target: { path: string; size: number }, output: string, http: RequestOptions, watchOutput: () => OutputWatch): Promise<{ size: number; complete: boolean; received: number; baseSize: number }> {
  const local = baseCachePath(options.baseCache, base.digest);
  const encodeOptions = {
    ...(options.level === undefined ? {} : { level: options.level }),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.windowBytes === undefined ? {} : { windowBytes: options.windowBytes }),
    watchOutput,
  };
  const known = await cachedDigest(local);
  if (known !== undefined) {
    await markUsed(local);
    try {
      const { size, complete } = await encodeDelta({ path: local, digest: known }, { path: target.path }, output, encodeOptions);
      return { size, complete, received: 0, baseSize: (await stat(local)).size };
    } catch (err) {
      const gone = (err as NodeJS.ErrnoException).code === 'ENOENT';
      if (!(err instanceof DigestMismatchError) && !gone) throw err;
    }
  }
  const stated = base.plainSize;
  const growthBound = UNSTATED_BASE_GROWTH * target.size;
  // The record's size is its uploader's word: one stating more than the growth bound (a
  // writer's gzip bomb stated as huge) is held to that bound, as a record stating none.
  const plainBound: PlainBound = stated !== undefined && Number.isSafeInteger(stated) && stated >= 0 && stated <= growthBound
    ? { bytes: stated, code: 'FC_ERR_SIZE_MISMATCH', what: 'the size of its tar its record at the origin states' }
    : { bytes: growthBound, code: 'FC_ERR_SIZE_MISMATCH', what: `${UNSTATED_BASE_GROWTH} times the tar being pushed, the limit for a base whose record does not state its size or states more` };
  const { received, written } = await downloadBlob(options.origin, base.digest, base.size, local, { ...http, gunzip: true, label: `base ${base.id}`, plainBound });
  await recordCachedDigest(local, written.digest);
  const { size, complete } = await encodeDelta({ path: local, digest: written.digest }, { path: target.path }, output, encodeOptions);
  return { size, complete, received, baseSize: written.size };
}

/**
 * The base among `bases` whose tar is `tarDigest`: recorded so by the local base cache (when
 * it made or fetched that base), and its copy there hashed again, since a damaged or edited
 * record would have every machine's pull of the run fail. Undefined when none is.
 */
async function baseHolding(baseCache: string, bases: readonly BaseInfo[], tarDigest: string): Promise<BaseInfo | undefined> {
  for (const base of bases) {
    const local = baseCachePath(baseCache, base.digest);
    if ((await cachedDigest(local)) !== tarDigest) continue;
    const copy = await sha256File(local).catch(() => undefined); // gone meanwhile: not known
    if (copy?.digest !== tarDigest) continue;
    await markUsed(local);
    return base;
  }
  return undefined;
}

/**
 * Whether the tar being pushed may be one of `bases` (baseHolding): only when the local base
 * cache records the tar of one of them. A host that has none (a fresh one, a pruned cache)
 * encodes against them whatever the tree.
 */
async function mayBeBaseAlready(baseCache: string, bases: readonly BaseInfo[]): Promise<boolean> {
  const recorded = await Promise.all(bases.map((base) => cachedDigest(baseCachePath(baseCache, base.digest))));
  return recorded.some((digest) => digest !== undefined);
}

/**
 * The project's bases, newest first (none when the project is new: the origin answers an
 * empty list). A 404 means no origin answers at that URL (a wrong path in --origin): said so
 * before anything is packed.
 */
export async function listBases(origin: string, project: string, options: RequestOptions = {}): Promise<BaseInfo[]> {
  try {
    const answer = await httpGetJson<{ bases: BaseInfo[] }>(joinUrl(origin, `/projects/${encodeURIComponent(project)}/bases/`), options);
    return answer.bases;
  } catch (err) {
    if (err instanceof NotFoundError) throw new NotFoundError(`${err.message}: no fleetcache origin answers there, check the origin URL`, err.request);
    throw err;
  }
}

/**
 * Fails when the origin would refuse this push's writes: no token (401), a token it does not
 * accept (403), or a machine's run token. An origin older than GET /-/token (404) is not
 * asked: its refusal comes with the first upload.
 */
async function checkWriteToken(origin: string, http: RequestOptions): Promise<void> {
  const url = joinUrl(origin, '/-/token');
  const grant = await httpGetJson<Grant>(url, http).catch((err: unknown) => {
    if (err instanceof NotFoundError) return undefined;
    if (err instanceof FleetError && err.code === 'FC_ERR_UNAUTHORIZED' && http.token === undefined) {
      throw new FleetError('FC_ERR_UNAUTHORIZED', `a push needs a write token, and none was given (--token-file FILE, or $FLEETCACHE_TOKEN): ${err.message}`, { request: err.request });
    }
    throw err;
  });
  if (grant && grant.scope !== 'write') throw new FleetError('FC_ERR_FORBIDDEN', `${redactUrl(origin)} takes this token as a run token (run ${grant.run}): a push needs a write token`, { request: failedRequest('GET', url) });
}

/**
 * The bases among `bases` whose blob the origin still has, at the size recorded; the others
 * go to `unusable`. Asked even of a base in the local cache, used there without a download:
 * the origin refuses a run that names a blob it lost, and would refuse every push after.
 * A server error about one blob (its disk fails to read it) passes that base over too,
 * rather than fail every push of the project; an origin that cannot be reached fails the push.
 */
async function storedAtOrigin(origin: string, bases: readonly BaseInfo[], http: RequestOptions, unusable: UnusableBase[]): Promise<BaseInfo[]> {
  const heads = await Promise.all(bases.map((base) => httpHead(joinUrl(origin, casPath(parseDigestString(base.digest))), http).catch((err: unknown) => {
    if (err instanceof UpstreamError && (err.upstreamStatus ?? 0) >= 500) return err;
    throw err;
  })));
  return bases.filter((base, i) => {
    const head = heads[i];
    if (head instanceof UpstreamError) {
      unusable.push({ id: base.id, reason: `the origin failed to answer for its blob ${base.digest}: ${head.message}` });
      return false;
    }
    const size = head && Number(head['content-length']);
    if (size === base.size) return true;
    unusable.push({ id: base.id, reason: head ? `its blob ${base.digest} at the origin has ${size} bytes, not ${base.size}` : `its blob ${base.digest} is not at the origin (HTTP 404)` });
    return false;
  });
}

export async function pushProject(options: PushOptions): Promise<PushResult> {
  const { signal } = options;
  const http: RequestOptions = { ...(options.token ? { token: options.token } : {}), ...(signal ? { signal } : {}), ...(options.progress ? { progress: options.progress } : {}) };
  const compression = options.compression ?? DEFAULT_COMPRESSION;
  const run = options.run ?? `${stamp()}-${randomBytes(3).toString('hex')}`;
  // Names the origin would refuse are refused before anything is packed or sent.
  checkSegment(options.project, 'project');
  checkSegment(run, 'run');
  const projectPath = `/projects/${encodeURIComponent(options.project)}`;
  // the project's tars, files only their owner may read included: made its user's alone (XDG's 0700)
  await makeDir(options.baseCache, 'base cache', 0o700);
  // Asked first: an origin that is down, or refuses this client or its token, fails the push
  // at once, not after the tree was packed and compressed (tens of seconds for a large one).
  const [bases] = await Promise.all([listBases(options.origin, options.project, http), checkWriteToken(options.origin, http)]);
  const unusableBases: UnusableBase[] = [];
  const candidates = await storedAtOrigin(options.origin, bases.slice(0, BASE_CANDIDATES), http, unusableBases);
  const regionCaches = options.regionCaches ?? [];
  // the caches' answers only rank the candidates against each other: one is used as it is
  const probe = (): Promise<number[]> => (candidates.length > 1 ? cachesLacking(regionCaches, candidates, signal) : Promise.resolve([]));
  // A tar that is a base already (an unchanged tree) asks the caches nothing: with a candidate's
  // tar in the local base cache the tree may be unchanged, and they are asked once the tar is
  // known not to be one; else at once, while the tree is packed (failing only when the push is stopped).
  const earlyProbes = (await mayBeBaseAlready(options.baseCache, candidates)) ? undefined : probe();
  earlyProbes?.catch(() => undefined);
  return withTempDir('fleetcache-push-', async (work) => {
    const packedFile = join(work, 'packed.tar');
    // The work directory and the base cache may lie inside the project (TMPDIR=$PWD/tmp, push ~).
    const packed = await packToFile(options.dir, packedFile, options.rules, signal, [work, options.baseCache, ...(options.secretFiles ?? [])]);
    let tarFile = packedFile;
    let result = { digest: `sha256:${packed.sha256}`, size: packed.size };
    if (options.repack) {
      tarFile = join(work, 'repacked.tar');
      await runRepack(options.repack, packedFile, tarFile, { ...options.repackOptions, cwd: options.dir, ...(signal ? { signal } : {}) });
      await checkRepackOutput(options.repack, tarFile);
      result = await sha256File(tarFile);
    }
    const resultHex = parseDigestString(result.digest).hex;
    const gzFile = `${tarFile}.gz`;
    // Compressed in a thread of its own while this one encodes the candidates (a small tar
    // here: gzip-thread.ts). Stopped before the work directory is removed when anything fails
    // first; handled at once, as it may fail during an encode.
    const stopGzip = new AbortController();
    const gzipping = gzipFile(tarFile, gzFile, result.size, signal ? AbortSignal.any([signal, stopGzip.signal]) : stopGzip.signal);
    gzipping.catch(() => undefined);
    try {
      let bytesReceived = 0;
      // A tar that is a base already (a push of a tree unchanged since that base): the run is
      // that base, with nothing to encode or send but the manifest.
      const same = await baseHolding(options.baseCache, candidates, result.digest);
      /** The cached tars this push used or made: what pruning leaves in place. */
      const used = new Set<string>();
      if (same) used.add(baseCachePath(options.baseCache, same.digest));
      // Each VCDIFF goes to a file (it can be as large as the tar), the best one kept.
      let best: Ranked | undefined;
      /**
       * The best of the candidates ranked 0 (raw VCDIFF under the re-base bound: a delta for
       * sure), kept beside a `best` ranked by its fast pass, whose slow pass may still leave it
       * past the bound: a new base would then cost its whole tar up and to every region, where
       * this delta costs at most its base to the regions lacking it.
       */
      let sure: Ranked | undefined;
      /**
       * A candidate's delta crosses the slow links once up, to the origin, and once down to
       * each region: its rank counts that many times. To it is added `fetches`, its whole
       * compressed base for each region whose cache lacks it (fetched there once).
       */
      const slowLinks = 1 + regionCaches.length;
      // asked beside the tar's gzip, before the first encode (the cheapest base is encoded first)
      const lackingCounts = same ? [] : await (earlyProbes ?? probe());
      const ranked = candidates
        .map((base, i) => ({ base, i, fetches: (lackingCounts[i] ?? 0) * base.size }))
        // the cheapest base first: a costlier one is then stopped early, or not fetched at all
        .sort((a, b) => a.fetches - b.fetches);
      /** The compressed tar's size once its gzip ended: a base too large for it is then passed over before it is fetched and encoded. */
      let gzippedSize: number | undefined;
      void gzipping.then((gz) => (gzippedSize = gz.size), () => undefined);
      const tooLarge = (base: BaseInfo, fullSize: number): boolean => base.size > MAX_BASE_GROWTH * fullSize;
      const encodes: CandidateEncode[] = [];
      /** Whether a candidate costing `fetches`, its VCDIFF `size` bytes so far, `counted` after the fast pass, can no longer be chosen (candidate-stop.ts). */
      const hopeless = (fetches: number, size: number, counted: number): boolean => {
        const bound = gzippedSize === undefined ? undefined : REBASE_RATIO * gzippedSize;
        return cannotBeChosen({ fetches, size, counted }, { bound, best, sure, slowLinks });
      };
      const beats = (candidate: Ranked, rival: Ranked | undefined): boolean => !rival || candidate.cost < rival.cost || (candidate.cost === rival.cost && candidate.vcdiffSize < rival.vcdiffSize);
      /** Removes the VCDIFF of a candidate passed over, unless it is still the best or the sure one. */
      const drop = async (dropped: Ranked | undefined): Promise<void> => {
        if (dropped && dropped !== best && dropped !== sure) await rm(dropped.file);
      };
      for (const { base, i, fetches } of same ? [] : ranked) {
        if (gzippedSize !== undefined && tooLarge(base, gzippedSize)) continue;
        if (hopeless(fetches, 0, 0)) continue; // its base to the regions costs more than the best
        const file = join(work, `candidate-${i}.vcdiff`);
        // Each candidate's VCDIFF is compressed by the fast pass as it is written (the ranking
        // below), so that an encode stops once the candidate can no longer be chosen: after a
        // new base, the older candidates differ by whatever made it, and a push of a small
        // change encoded all of that against each of them (minutes for a few hundred MB), and
        // a push that makes a new base encoded every candidate in full first.
        let counter: QuickSizeCounter | undefined;
        const watchOutput = (): OutputWatch => {
          counter?.destroy(); // an attempt at a lower level: the VCDIFF starts again
          const count = (counter = new QuickSizeCounter(compression, result.size));
          return async (bytes, size) => {
            await count.write(bytes);
            return hopeless(fetches, size, count.counted);
          };
        };
        try {
          const encoded = await encodeAgainstBase(options, base, { path: tarFile, size: result.size }, file, http, watchOutput).catch((err: unknown) => {
            if (!(err instanceof FleetError) || !UNUSABLE_BASE_CODES.has(err.code)) throw err;
            unusableBases.push({ id: base.id, reason: err.message });
            return undefined;
          });
          if (!encoded) continue;
          const { size, complete, received, baseSize } = encoded;
          bytesReceived += received;
          encodes.push({ id: base.id, vcdiffSize: size, complete });
          if (!complete) {
            used.add(baseCachePath(options.baseCache, base.digest));
            await rm(file);
            continue;
          }
          // Known once the tar is compressed: asked before the first encode, the gzip would not run beside it.
          const fullSize = (await gzipping).size;
          if (tooLarge(base, fullSize)) {
            await rm(file);
            continue;
          }
          used.add(baseCachePath(options.baseCache, base.digest));
          // Candidates are ranked by their fast compression (compressDelta's slow pass costs up
          // to 1.6 s per MiB), or as 0 when the raw VCDIFF is under the re-base bound already: only
          // the best gets the slow pass, and only when it can still come under the bound (the
          // slow pass does not halve what the fast one leaves). A delta ranked 0 counts as nothing
          // beside a base a region lacks (a tenth of the tar at most, where that base is a whole tar).
          const fastPass = await (counter as QuickSizeCounter).end();
          const quick = size <= REBASE_RATIO * fullSize ? 0 : fastPass;
          const cost = quick * slowLinks + fetches;
          // Past 2 × the re-base bound, a delta is not chosen (a new base is made): nor can it
          // push aside, by its cheaper base, a candidate that could be.
          const choosable = quick <= 2 * REBASE_RATIO * fullSize;
          const entry: Ranked = { base, baseSize, file, vcdiffSize: size, quick, fastPass, cost };
          const passed = [best, sure];
          if (choosable && beats(entry, best)) best = entry;
          if (quick === 0 && beats(entry, sure)) sure = entry;
          for (const candidate of new Set([...passed, entry])) await drop(candidate);
        } finally {
          counter?.destroy(); // nothing once it ended
        }
      }
      const gz = await gzipping;
      const fullUploadBytes = gz.size;
      const bound = REBASE_RATIO * fullUploadBytes;
      const deltaFile = join(work, 'delta');
      let compressionPasses = 0;
      const compressForUpload = async (ranked: Ranked): Promise<Ranked & { deltaSize: number }> => {
        const { size, passes } = await compressDelta(ranked.file, deltaFile, compression, ranked.fastPass);
        compressionPasses += passes;
        return { ...ranked, deltaSize: size };
      };
      let chosen = best ? await compressForUpload(best) : undefined;
      // the best by its fast pass would make a new base: the sure delta costs less
      if (chosen && chosen.deltaSize > bound && sure && sure !== best) chosen = await compressForUpload(sure);

      signal?.throwIfAborted();
      const created = new Date().toISOString();
      let base: RunManifest['base'];
      let delta: RunManifest['delta'] = null;
      let bytesSent = 0;
      const rebased = !same && (!chosen || chosen.deltaSize > bound);
      if (same) {
        base = { id: same.id, digest: same.digest, size: same.size, plainSize: result.size };
      } else if (!chosen || rebased) {
        const id = `${stamp()}-${resultHex.slice(0, 12)}`;
        // Bases are stored gzip-compressed: the first upload and each region's first fetch cost
        // what spread's gzip upload would; the local base cache keeps the plain tar for deltas.
        const baseUrl = joinUrl(options.origin, `${projectPath}/bases/${encodeURIComponent(id)}`);
        const stored = await httpPut<{ digest: string; size: number }>(baseUrl, createReadStream(gzFile), {
          ...http,
          // Checked by the origin before the base is published (a body damaged on the way is refused).
          // the plain size, listed with the base, bounds the gunzip of a push that fetches it
          headers: { 'content-type': 'application/gzip', 'content-length': String(gz.size), 'x-fleetcache-digest': gz.digest, 'x-fleetcache-plain-size': String(result.size) },
        });
        bytesSent += gz.size;
        // the origin's answer names the URL: `run` says the push failed at the origin, not here
        if (stored.digest !== gz.digest) throw new DigestMismatchError(gz.digest, stored.digest, failedRequest('PUT', baseUrl));
        const local = baseCachePath(options.baseCache, stored.digest);
        used.add(local);
        if ((await cachedDigest(local)) !== result.digest) {
          await writeAtomically(local, (tmp) => copyFile(tarFile, tmp));
          await recordCachedDigest(local, result.digest);
        }
        base = { id, digest: stored.digest, size: stored.size, plainSize: result.size };
      } else {
        const { digest } = await sha256File(deltaFile);
        await httpPut(joinUrl(options.origin, `/cas/sha256/${parseDigestString(digest).hex}`), createReadStream(deltaFile), {
          ...http,
          headers: { 'content-length': String(chosen.deltaSize) },
        });
        bytesSent += chosen.deltaSize;
        base = { id: chosen.base.id, digest: chosen.base.digest, size: chosen.base.size, plainSize: chosen.baseSize };
        delta = { digest, size: chosen.deltaSize, compression, vcdiffSize: chosen.vcdiffSize };
      }
      const manifest: RunManifest = { format: MANIFEST_FORMAT, project: options.project, run, created, base, delta, result };
      signal?.throwIfAborted();
      const body = JSON.stringify(manifest);
      // never replace a run: machines may be pulling it (If-None-Match: *, a 412 when it exists)
      await httpPut(joinUrl(options.origin, `${projectPath}/runs/${encodeURIComponent(run)}`), body, {
        ...http,
        headers: { 'content-type': 'application/json', 'if-none-match': '*' },
      }).catch((err: unknown) => {
        if (err instanceof FleetError && err.code === 'FC_ERR_PRECONDITION_FAILED') {
          throw new FleetError('FC_ERR_PRECONDITION_FAILED', `run ${run} of project ${options.project} already exists at the origin; push with another --run`, { cause: err });
        }
        throw err;
      });
      const manifestBytes = Buffer.byteLength(body);
      bytesSent += manifestBytes;
      const pruned = await pruneBaseCache(options.baseCache, options.baseCacheSize ?? parseSize(DEFAULT_BASE_CACHE_SIZE), used);
      return { run, manifest, bytesSent, fullUploadBytes, manifestBytes, bytesReceived, rebased, pruned, skipped: packed.skipped, unusableBases, encodes, compressionPasses };
    } finally {
      stopGzip.abort(); // nothing when it ended
      await gzipping.catch(() => undefined);
    }
  });
}
