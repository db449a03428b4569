// Lets a step of `npm run build` skip its work when nothing it read has changed since it last
// succeeded: `npm ci` (its prepare script) builds, then `npm test` builds the same tree again,
// and a developer's `npm test` rebuilds after every edit.
//
// A record (JSON beside the step's outputs) holds what the step depends on besides files (the
// Node version, its options) and each file it read and wrote, with what stat says of it: inode,
// size, mtime and ctime in ns. Whatever rewrites, replaces, touches or removes a file changes
// its ctime, which no one can set back (npm's tarballs give every file of a package the same
// mtime, and a new version of a file can have the old one's size: mtime and size alone would
// miss it). The directories holding the inputs (up to the repository, node_modules's own
// excepted: node_modules/.package-lock.json stands for npm's changes) are recorded too: a file
// added beside an input can change what an import resolves to.
//
// The record is removed before the step runs and written after it succeeded, unless an input
// changed while it ran (the step may have read the old content): a failed or raced build leaves
// none, and the next build does the work.
import { createRequire } from 'node:module';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** What stat says of `path` that any change to it changes, or 'missing'. */
function signature(path) {
  try {
    const s = statSync(path, { bigint: true });
    return `${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
  } catch (err) {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return 'missing';
    throw err;
  }
}

const nameOf = (path) => (path.startsWith(ROOT + sep) ? relative(ROOT, path) : path);
const pathOf = (name) => (isAbsolute(name) ? name : join(ROOT, name));

/** The files and directories under `dir` whose names end with one of `endings` (all when none), and the directories. */
export function filesUnder(dir, endings = ['']) {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isDirectory() || endings.some((ending) => entry.name.endsWith(ending)))
    .map((entry) => join(entry.parentPath, entry.name));
}

/** The package.json of the package each file is in (the nearest one above it): what resolves imports of it. */
export function packageFiles(files) {
  const nearest = new Map(); // directory → its package's package.json
  const lookUp = (dir) => {
    if (!nearest.has(dir)) {
      const json = join(dir, 'package.json');
      nearest.set(dir, signature(json) !== 'missing' || dir === dirname(dir) ? json : lookUp(dirname(dir)));
    }
    return nearest.get(dir);
  };
  return [...new Set(files.map((file) => lookUp(dirname(file))))];
}

/**
 * What a bundle of esbuild (scripts/build-cli.mjs, build-agent.mjs) depends on: the files it read
 * (esbuild's `metafile` names them relative to the working directory, and those of a plugin's
 * namespace with its prefix) and their packages' package.json; every module of src/ (the
 * checks of the build read them all, and tests take a bundle older than any for stale); what
 * this process required (the checks of scripts/cores.mjs); the bundle's `script` and the scripts both bundles share.
 */
export function bundleInputs(metafile, script) {
  const bundled = Object.keys(metafile.inputs).filter((name) => !/^[\w-]+:/.test(name)).map((name) => resolve(name));
  const required = Object.keys(createRequire(import.meta.url).cache);
  return [...bundled, ...packageFiles(bundled), ...filesUnder(join(ROOT, 'src'), ['.ts']), ...required, ...PACKAGE_INPUTS, script, ...BUNDLE_SCRIPTS];
}

/** The scripts both bundles are made with besides their own: the cores plugin and its checks, the shared options, the lazy stand-ins. */
const BUNDLE_SCRIPTS = ['cores.mjs', 'esbuild-node.mjs', 'lazy-modules.mjs', 'undici-core.cjs', 'prom-client-core.cjs'].map((name) => join(ROOT, 'scripts', name));

/** The key of a bundle's record: its step and esbuild's version, read from esbuild's package.json (its module is imported only to build: loading it alone costs a skipped build a third more). */
export function bundleKey(step) {
  return { step, esbuild: createRequire(import.meta.url)('esbuild/package.json').version };
}

/** What esbuild and tsc read besides the files they name: the tsconfig, the package's manifest (its "type"), npm's record of node_modules (what npm installed). */
export const PACKAGE_INPUTS = ['tsconfig.json', 'package.json', 'node_modules/.package-lock.json'].map(pathOf);

/** The directories above `file` (in the repository and below node_modules/, or its own outside it). */
function directoriesOf(file) {
  if (!file.startsWith(ROOT + sep)) return [dirname(file)];
  const dirs = [];
  for (let dir = dirname(file); dir !== ROOT && dir !== join(ROOT, 'node_modules'); dir = dirname(dir)) dirs.push(dir);
  return dirs;
}

/** Whether the step recorded at `record` (a path) is current: same `key`, every file as it was. */
export function isCurrent(record, key) {
  let recorded;
  try {
    recorded = JSON.parse(readFileSync(record, 'utf8'));
  } catch {
    return false;
  }
  if (JSON.stringify(recorded.key) !== JSON.stringify({ node: process.version, ...key })) return false;
  return Object.entries(recorded.files).every(([name, sig]) => signature(pathOf(name)) === sig);
}

/**
 * Before the step: removes its record and returns when it starts, by the file system's clock
 * (a file written now: the times it gives the inputs are on the same clock).
 */
export function startRecord(record) {
  mkdirSync(dirname(record), { recursive: true });
  rmSync(record, { force: true });
  const marker = `${record}.${process.pid}.start`;
  writeFileSync(marker, '');
  const startedNs = statSync(marker, { bigint: true }).mtimeNs;
  rmSync(marker);
  return startedNs;
}

/**
 * After the step succeeded: records `key`, its `inputs` and `outputs` (absolute paths), unless
 * an input changed since `startedNs` (startRecord). Returns whether it wrote the record.
 */
export function writeRecord(record, key, { inputs, outputs }, startedNs) {
  const read = new Set([fileURLToPath(import.meta.url), ...inputs]);
  for (const file of [...read]) for (const dir of directoriesOf(file)) read.add(dir);
  const entries = {};
  for (const file of [...new Set([...read, ...outputs])].sort()) {
    const sig = signature(file);
    if (read.has(file) && sig !== 'missing' && BigInt(sig.split(':')[3]) >= startedNs) return false;
    entries[nameOf(file)] = sig;
  }
  const temp = `${record}.${process.pid}.tmp`;
  writeFileSync(temp, `${JSON.stringify({ key: { node: process.version, ...key }, files: entries }, null, 1)}\n`);
  renameSync(temp, record);
  return true;
}
