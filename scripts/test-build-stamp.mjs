// Whether the compiled tests (.test-build/, scripts/build-tests.mjs) are current. The tree
// is compiled file by file from src/ and test/; a .ts file saved after that (an edit without
// rerunning build-tests) leaves old code in it, and a test run there, a mutation check
// above all, would silently check the old code; so does a tree built by an older version of
// the build (its scripts, this file, or tsconfig.json, which esbuild reads for each file), and
// one whose bundled packages (.test-build/node_modules, scripts/vendor-test-packages.mjs) are
// older than those installed: package-lock.json, or a patch of patches/ that
// patch-package applies, saved since.
// build-tests creates a stamp before it reads a source and names it once the build
// succeeded: a source or build input newer than the stamp, or no stamp (a build that
// failed, or one from before the stamp), means the tree is stale.
import { existsSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';

const STAMP = 'compiled-sources-at';
const BUILDING = `${STAMP}.building`;
const SOURCE_DIRS = ['src', 'test'];
/** What makes the compiled tree besides the sources, relative to the repository. */
const BUILD_INPUTS = ['scripts/build-tests.mjs', 'scripts/test-build-stamp.mjs', 'scripts/vendor-test-packages.mjs', 'scripts/esbuild-node.mjs', 'tsconfig.json'];
/**
 * What says which packages are installed: the versions, patch-package's patches (a
 * directory), and tap's test class as `tap build` made it for package.json's plugins (the
 * tap of the compiled tests is a bundle, scripts/vendor-test-packages.mjs).
 */
const PACKAGE_INPUTS = ['package-lock.json', 'patches', 'node_modules/@tapjs/test/test-built/dist/esm/index.js'];

/** The .ts files (not declarations) under `dir`: what build-tests compiles. */
export function typescriptFiles(dir) {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts'))
    .map((entry) => join(entry.parentPath, entry.name));
}

/** Before the build reads a source: its time is the stamp's, so a file saved during the build counts as newer. */
export function startStamp(out) {
  writeFileSync(join(out, BUILDING), 'the sources compiled here are the ones saved before this file (scripts/test-build-stamp.mjs)\n');
}

/** After the build succeeded. rename keeps the time of startStamp. */
export function finishStamp(out) {
  renameSync(join(out, BUILDING), join(out, STAMP));
}

/**
 * Why the compiled tree holding `script` (<repository>/.test-build/...) is stale, saying to
 * rerun build-tests: a .ts file of the repository's src/ or test/, or one of the build's
 * inputs, is newer than the tree, or the tree has no stamp. undefined when it is current,
 * or `script` is not in such a tree.
 */
export function staleTestBuild(script) {
  let out = dirname(script);
  while (basename(out) !== '.test-build') {
    if (dirname(out) === out) return undefined;
    out = dirname(out);
  }
  const repository = dirname(out);
  const rebuild = `run \`node scripts/build-tests.mjs\` in ${repository}`;
  const stamp = join(out, STAMP);
  if (!existsSync(stamp)) return `${out} has no ${STAMP} stamp (its build failed or predates the stamp): ${rebuild}`;
  const compiledAt = statSync(stamp).mtimeMs;
  // the same time counts too: file times tick coarsely (a few ms), a save just after the stamp may share its time
  const savedSince = (file) => statSync(file).mtimeMs >= compiledAt;
  const compiled = relative(repository, out);
  for (const dir of SOURCE_DIRS) {
    const source = typescriptFiles(join(repository, dir)).find(savedSince);
    if (source !== undefined) return `${relative(repository, source)} was saved after ${compiled}/ was compiled, which still holds its old code: ${rebuild}`;
  }
  const input = BUILD_INPUTS.map((name) => join(repository, name)).find((file) => existsSync(file) && savedSince(file));
  if (input !== undefined) return `${relative(repository, input)} was saved after ${compiled}/ was compiled, by the build's old version: ${rebuild}`;
  const packages = PACKAGE_INPUTS.map((name) => join(repository, name))
    .filter((path) => existsSync(path))
    .flatMap((path) => (statSync(path).isDirectory() ? readdirSync(path).map((name) => join(path, name)) : [path]))
    .find(savedSince);
  if (packages !== undefined) return `${relative(repository, packages)} was saved after ${compiled}/ was compiled, whose node_modules/ bundles the packages installed before: ${rebuild}`;
  return undefined;
}
