// `assets upload`: puts the files a manifest names into the origin's CAS, skipping what
// it already has (sha256 files aside, below). Unlike tooltool's batch/pre-signed-URL dance, the origin takes
// `PUT /cas/sha512/<hex>` directly and verifies the digest itself; visibility travels
// in `X-Fleetcache-Visibility`. Each file is verified locally first so a stale manifest
// is caught before any byte is sent.
//
// A sha512 file the origin has is skipped; a sha256 one is sent again, as only an upload to
// /cas tells retention that bytes an artifact also has are an asset to keep.
//
// Visibility is fixed at an asset's first upload, as in tooltool (whose upload fails with
// a 400 for another one). The origin's HEAD answer says which one it keeps
// (X-Fleetcache-Visibility): an asset the manifest asks another visibility for, either
// way, is refused before anything is sent. An origin that does not say (older than the
// header) is asked the one way that matters most: whether an asset the manifest asks
// internal can already be downloaded without a token.
import { createReadStream } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import type { Dispatcher } from 'undici';
import { requestUrl } from '../http/request-url.js';
import { clientAgent, httpHead, httpPut, joinUrl } from '../client/http.js';
import { DigestMismatchError, errorMessage, FleetError, SizeMismatchError, UpstreamError, UsageError } from '../errors.js';
import { unreadableFile } from '../path-checks.js';
import { redactUrl } from '../redact-url.js';
import { isDigestAlgorithm, parseDigest, casPath } from '../store/digest.js';
import { droppedReason, hashFile, readManifest, type Visibility } from './manifest.js';

interface UploadAssetsOptions {
  readonly manifestPath: string;
  /** The origin's base URL. */
  readonly origin: string;
  readonly token?: string;
  /** Where the files are (default: the current directory, as with tooltool). */
  readonly dir?: string;
  readonly dispatcher?: Dispatcher;
  readonly onFile?: (result: UploadResult) => void;
}

interface UploadResult {
  readonly filename: string;
  readonly size: number;
  readonly visibility: Visibility;
  /** false: the origin already had it. */
  readonly uploaded: boolean;
}

export async function uploadAssets(options: UploadAssetsOptions): Promise<UploadResult[]> {
  const { records, dropped } = await readManifest(options.manifestPath);
  if (dropped.length > 0) {
    const d = dropped[0]!;
    throw new UsageError(`${options.manifestPath}:${d.line}: record ${d.index} ${droppedReason(d)}; cannot upload it`);
  }
  const dir = options.dir ?? process.cwd();
  // Check everything before sending anything: one bad record should not leave half an upload.
  const plan = [];
  for (const r of records) {
    if (!isDigestAlgorithm(r.algorithm)) throw new UsageError(`${r.filename}: the origin stores sha256 and sha512 only, not ${r.algorithm}`);
    if (!r.visibility) {
      const given = r.otherVisibility === undefined ? '' : `, not ${JSON.stringify(r.otherVisibility)}`;
      throw new UsageError(`${options.manifestPath}: ${r.filename}: visibility (public or internal) is required to upload${given}`);
    }
    const path = join(dir, r.filename);
    let actual: { size: number; digest: string };
    try {
      actual = await hashFile(path, r.algorithm);
    } catch (err) {
      throw unreadableFile(err, path);
    }
    // The mismatch errors alone do not say which file: name it.
    if (r.size !== null && actual.size !== r.size) throw named(path, new SizeMismatchError(r.size, actual.size));
    if (actual.digest !== r.digest) throw named(path, new DigestMismatchError(`${r.algorithm}:${r.digest}`, `${r.algorithm}:${actual.digest}`));
    const url = joinUrl(options.origin, casPath(parseDigest(r.algorithm, r.digest)));
    plan.push({ record: r, visibility: r.visibility, path, size: actual.size, url });
  }
  // The origin keeps one visibility per digest: the same content asked public and internal
  // would be stored as the first and reported "present" for the second.
  const asked = new Map<string, { filename: string; visibility: Visibility }>();
  const conflicts: string[] = [];
  for (const { url, visibility, record } of plan) {
    const first = asked.get(url);
    if (!first) asked.set(url, { filename: record.filename, visibility });
    else if (first.visibility !== visibility) {
      conflicts.push(`${record.filename}: the manifest asks visibility ${visibility}, but record "${first.filename}" asks ${first.visibility} for the same content`);
    }
  }
  if (conflicts.length > 0) {
    throw new UsageError(`${options.manifestPath}: ${conflicts.join('; ')}. One content has one visibility; nothing was uploaded`);
  }
  const auth = { token: options.token, dispatcher: options.dispatcher };
  const present = new Set<string>();
  const mismatches: string[] = [];
  for (const { url, visibility, record } of plan) {
    const head = await httpHead(url, auth);
    if (!head) continue;
    present.add(url);
    const stored = visibilityOf(head) ?? (visibility === 'internal' && (await readableWithoutToken(url, options.dispatcher)) ? 'public' : undefined);
    if (stored !== undefined && stored !== visibility) {
      mismatches.push(`${record.filename}: the manifest asks visibility ${visibility}, but the origin already has it as ${stored}: ${CONSEQUENCE[stored]}`);
    }
  }
  if (mismatches.length > 0) {
    throw new UsageError(
      `${options.manifestPath}: ${mismatches.join('; ')}. Visibility is fixed at the first upload (as in tooltool); nothing was uploaded`,
    );
  }
  const results: UploadResult[] = [];
  /** Digests sent by this upload: the same one under another filename is there now. */
  const sent = new Set<string>();
  for (const p of plan) {
    // A sha256 blob may be there as an artifact's bytes only (names point at sha256 blobs), which
    // retention frees with the artifact: sent again, the origin records it as uploaded to /cas.
    const uploaded = !sent.has(p.url) && (!present.has(p.url) || p.record.algorithm === 'sha256');
    if (uploaded) {
      const headers: Record<string, string> = { 'content-type': 'application/octet-stream', 'content-length': String(p.size) };
      if (p.visibility === 'internal') headers['x-fleetcache-visibility'] = 'internal';
      await httpPut(p.url, createReadStream(p.path), { ...auth, headers });
      sent.add(p.url);
    }
    const result = { filename: p.record.filename, size: p.size, visibility: p.visibility, uploaded };
    options.onFile?.(result);
    results.push(result);
  }
  return results;
}

function named(path: string, err: FleetError): FleetError {
  return new FleetError(err.code, `${path}: ${err.message}`, { details: err.details });
}

/** What an asset stored with each visibility means, for the message of a mismatch. */
const CONSEQUENCE: Record<Visibility, string> = {
  public: 'anyone can download it without a token',
  internal: 'it cannot be downloaded without a token',
};

/** The visibility a HEAD answer says the origin keeps, undefined when it does not say. */
function visibilityOf(headers: IncomingHttpHeaders): Visibility | undefined {
  const value = headers['x-fleetcache-visibility'];
  return value === 'public' || value === 'internal' ? value : undefined;
}

/**
 * Whether the origin serves the blob to a HEAD without a token (it is public there): 2xx
 * yes, 401 or 403 no. Not httpHead, which turns a 401 or 403 into an error: here they
 * are an answer.
 */
async function readableWithoutToken(url: string, dispatcher: Dispatcher | undefined): Promise<boolean> {
  let status: number;
  try {
    const res = await requestUrl(dispatcher ?? clientAgent, url, { method: 'HEAD' });
    await res.body.dump();
    status = res.statusCode;
  } catch (err) {
    throw new UpstreamError(`HEAD ${redactUrl(url)}: ${errorMessage(err)}`, { cause: err });
  }
  if (status === 401 || status === 403) return false;
  if (status >= 200 && status < 300) return true;
  throw new UpstreamError(`HEAD ${redactUrl(url)} without a token: HTTP ${status}`, { status });
}
