// tooltool's `list` and `validate` (shared/tooltool.md §2): what a manifest's files look
// like in a directory, without fetching or deleting anything. A file is present when its
// name exists, a symlink judged by its target (os.path.exists); it is valid when its size
// (unless null) and then its digest match the record.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { hashFile, readManifest, type DroppedRecord, type ManifestRecord } from './manifest.js';
import { errorMessage } from '../errors.js';

type FileState = 'missing' | 'invalid' | 'valid';

export interface FileCheck {
  readonly record: ManifestRecord;
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

async function checkFile(dir: string, record: ManifestRecord): Promise<FileCheck> {
  const path = join(dir, record.filename);
  const st = await stat(path).catch((err: NodeJS.ErrnoException) => err);
  if (st instanceof Error) {
    return st.code === 'ENOENT' ? { record, state: 'missing', reason: `${path} does not exist` } : { record, state: 'invalid', reason: `${path}: ${st.message}` };
  }
  if (!st.isFile()) return { record, state: 'invalid', reason: `${path} is not a regular file` };
  if (record.size !== null && st.size !== record.size) return { record, state: 'invalid', reason: `${path} has ${st.size} bytes, the manifest says ${record.size}` };
  let digest: string;
  try {
    digest = (await hashFile(path, record.algorithm)).digest;
  } catch (err) {
    return { record, state: 'invalid', reason: `${path}: ${errorMessage(err)}` };
  }
  if (digest !== record.digest) return { record, state: 'invalid', reason: `${path} has ${record.algorithm} ${digest}, the manifest says ${record.digest}` };
  return { record, state: 'valid' };
}

/** Each record of the manifest checked against the file of its name in `dir`, in manifest order. */
export async function checkManifestFiles(manifestPath: string, dir: string): Promise<ManifestCheck> {
  const manifest = await readManifest(manifestPath);
  const files: FileCheck[] = [];
  for (const record of manifest.records) files.push(await checkFile(dir, record));
  return { files, dropped: manifest.dropped, manifestWarnings: manifest.warnings };
}
