// tooltool's `list` and `validate` (shared/tooltool.md §2): what a manifest's files look
// like in a directory, without fetching or deleting anything. A file is present when its
// name exists, a symlink judged by its target (os.path.exists); it is valid when its size
// (unless null) and then its digest match the record. A record with a malformed size,
// algorithm or digest is listed too, never valid, as tooltool lists it (no file matches it).
import { stat } from 'node:fs/promises';
import { Stats } from 'node:fs';
import { join } from 'node:path';
import { hashFile, inManifestOrder, readManifest, type DroppedRecord, type InvalidRecord, type ManifestRecord } from './manifest.js';
import { errorMessage } from '../errors.js';

type FileState = 'missing' | 'invalid' | 'valid';

export interface FileCheck {
  readonly filename: string;
  readonly state: FileState;
  /** Why the file is missing or invalid. */
  readonly reason?: string;
}

interface ManifestCheck {
  readonly files: readonly FileCheck[];
  /** Records tooltool skips silently (a required key missing): neither listed nor checked. */
  readonly dropped: readonly DroppedRecord[];
  /** The manifest's values tooltool accepts that are likely mistakes (Manifest.warnings). */
  readonly manifestWarnings: readonly string[];
}

/** The file's stat; a FileCheck when it is missing or cannot be looked at. */
async function statFile(path: string, filename: string): Promise<Stats | FileCheck> {
  const st = await stat(path).catch((err: NodeJS.ErrnoException) => err);
  if (!(st instanceof Error)) return st;
  return st.code === 'ENOENT' ? { filename, state: 'missing', reason: `${path} does not exist` } : { filename, state: 'invalid', reason: `${path}: ${st.message}` };
}

/** A record no file can match: missing when there is no file, else invalid; the reason is what is malformed. */
async function checkInvalid(dir: string, record: InvalidRecord): Promise<FileCheck> {
  const { filename } = record;
  const st = await statFile(join(dir, filename), filename);
  return { filename, state: st instanceof Stats || st.state !== 'missing' ? 'invalid' : 'missing', reason: record.error.message };
}

async function checkFile(dir: string, record: ManifestRecord): Promise<FileCheck> {
  const path = join(dir, record.filename);
  const filename = record.filename;
  const st = await statFile(path, filename);
  if (!(st instanceof Stats)) return st;
  if (!st.isFile()) return { filename, state: 'invalid', reason: `${path} is not a regular file` };
  if (record.size !== null && st.size !== record.size) return { filename, state: 'invalid', reason: `${path} has ${st.size} bytes, the manifest says ${record.size}` };
  let digest: string;
  try {
    digest = (await hashFile(path, record.algorithm)).digest;
  } catch (err) {
    return { filename, state: 'invalid', reason: `${path}: ${errorMessage(err)}` };
  }
  if (digest !== record.digest) return { filename, state: 'invalid', reason: `${path} has ${record.algorithm} ${digest}, the manifest says ${record.digest}` };
  return { filename, state: 'valid' };
}

/** Each record of the manifest checked against the file of its name in `dir`, in manifest order. */
export async function checkManifestFiles(manifestPath: string, dir: string): Promise<ManifestCheck> {
  const manifest = await readManifest(manifestPath, { keepInvalid: true });
  const valid: FileCheck[] = [];
  for (const record of manifest.records) valid.push(await checkFile(dir, record));
  const invalid: FileCheck[] = [];
  for (const record of manifest.invalid) invalid.push(await checkInvalid(dir, record));
  return { files: inManifestOrder(manifest, valid, invalid), dropped: manifest.dropped, manifestWarnings: manifest.warnings };
}
