// Where `fleetcache run` keeps its local state, and which of its files inside the project
// are never shipped with it.
import { chmod } from 'node:fs/promises';
import { isAbsolute, relative, sep } from 'node:path';
import { dataDirError, makeDataDir, pathError } from '../path-checks.js';
import { REUSE_FILE, REUSE_TEMP_FILE } from './reuse.js';
import type { PackRules } from '../pack/rules.js';
import { TIMINGS_FILE, TIMINGS_TEMP_FILES } from './timings.js';

/**
 * The runner's local state directory under the project root when no --data is given:
 * hidden, like spread's .spread-reuse files, and never `cache/`: the runner leaves its data
 * directory out of the shipped project, and a project may have a cache/ of its own.
 */
export const DEFAULT_DATA_DIR = '.fleetcache';

/**
 * The runner's own files inside the project, never shipped with it: reuse and timings files
 * (and their temp files, which a run killed mid-write leaves, machines' passwords in the
 * reuse file's), the data directory in use, and the default one whatever `--data` says (a run
 * before may have left it, with the embedded origin's write token in it).
 */
export function runnerState(root: string, dataRoot: string): Required<Pick<PackRules, 'excludePaths' | 'excludePathPatterns'>> {
  const data = relative(root, dataRoot);
  const inside = data !== '' && !data.startsWith('..') && !isAbsolute(data);
  const dataDirs = new Set([DEFAULT_DATA_DIR, ...(inside ? [data.split(sep).join('/')] : [])]);
  return { excludePaths: [REUSE_FILE, REUSE_TEMP_FILE, TIMINGS_FILE, ...dataDirs], excludePathPatterns: [TIMINGS_TEMP_FILES] };
}

/**
 * Makes the runner's data directory its user's alone (0700), whoever made it and however: it
 * holds the project's tars (the base cache), the embedded caches' copies of the project and
 * the artifacts (0644, as every cache keeps public content), the local machines' trees, the
 * embedded origin's token. A file of the project only its owner may read is in those tars.
 */
export async function makePrivate(dataRoot: string): Promise<void> {
  makeDataDir(dataRoot, 0o700);
  // another user's directory (EPERM): refused by name, nothing of this run put in it
  await chmod(dataRoot, 0o700).catch((err: unknown) => Promise.reject(dataDirError(pathError(err, dataRoot, 'data directory'), dataRoot, 'cannot be made private')));
}
