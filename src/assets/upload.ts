// `assets upload`: puts the files a manifest names into the origin's CAS, skipping what
// it already has. Unlike tooltool's batch/pre-signed-URL dance, the origin takes
// `PUT /cas/sha512/<hex>` directly and verifies the digest itself; visibility travels
// in `X-Fleetcache-Visibility`. Each file is verified locally first so a stale manifest
// is caught before any byte is sent.
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import type { Dispatcher } from 'undici';
import { httpExists, httpPut, joinUrl } from '../client/http.js';
import { DigestMismatchError, SizeMismatchError, UsageError } from '../errors.js';
import { isDigestAlgorithm, parseDigest, casPath } from '../store/digest.js';
import { hashFile, readManifest, type Visibility } from './manifest.js';

export interface UploadAssetsOptions {
  readonly manifestPath: string;
  /** The origin's base URL. */
  readonly origin: string;
  readonly token?: string;
  /** Where the files are (default: the current directory, as with tooltool). */
  readonly dir?: string;
  readonly dispatcher?: Dispatcher;
  readonly onFile?: (result: UploadResult) => void;
}

export interface UploadResult {
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
    throw new UsageError(`${options.manifestPath}:${d.line}: record ${d.index} lacks ${d.missing.join(', ')}; cannot upload it`);
  }
  const dir = options.dir ?? process.cwd();
  // Check everything before sending anything: one bad record should not leave half an upload.
  const plan = [];
  for (const r of records) {
    if (!isDigestAlgorithm(r.algorithm)) throw new UsageError(`${r.filename}: the origin stores sha256 and sha512 only, not ${r.algorithm}`);
    if (!r.visibility) throw new UsageError(`${options.manifestPath}: ${r.filename}: visibility (public or internal) is required to upload`);
    const path = join(dir, r.filename);
    let actual: { size: number; digest: string };
    try {
      actual = await hashFile(path, r.algorithm);
    } catch (err) {
      throw new UsageError(`${path}: cannot read: ${(err as Error).message}`);
    }
    if (r.size !== null && actual.size !== r.size) throw new SizeMismatchError(r.size, actual.size);
    if (actual.digest !== r.digest) throw new DigestMismatchError(`${r.algorithm}:${r.digest}`, `${r.algorithm}:${actual.digest}`);
    plan.push({ record: r, visibility: r.visibility, path, size: actual.size, digest: parseDigest(r.algorithm, r.digest) });
  }
  const results: UploadResult[] = [];
  for (const p of plan) {
    const url = joinUrl(options.origin, casPath(p.digest));
    const request = { token: options.token, dispatcher: options.dispatcher };
    const present = await httpExists(url, request);
    if (!present) {
      const headers: Record<string, string> = { 'content-type': 'application/octet-stream', 'content-length': String(p.size) };
      if (p.visibility === 'internal') headers['x-fleetcache-visibility'] = 'internal';
      await httpPut(url, createReadStream(p.path), { ...request, headers });
    }
    const result = { filename: p.record.filename, size: p.size, visibility: p.visibility, uploaded: !present };
    options.onFile?.(result);
    results.push(result);
  }
  return results;
}
