// A compiled test (under .test-build/, scripts/build-tests.mjs) is refused by
// test/helpers/preload.mjs when a .ts file of src/ or test/, or one of the build's own
// inputs, was saved after the tree was compiled: it would check the old code; so was the
// package-lock.json, a patch of patches/ or tap's test class as `tap build` made it
// (.test-build/node_modules bundles the packages installed then: it would check the old
// packages). Run as tap
// runs a test file, on a repository of a test directory.
import { execFile } from 'node:child_process';
import { mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t, { type Test } from 'tap';
import { REPO_ROOT } from '../helpers/processes.js';

const PRELOAD = `${REPO_ROOT}test/helpers/preload.mjs`;
const STAMP_MODULE = pathToFileURL(`${REPO_ROOT}scripts/test-build-stamp.mjs`).href;

/** What build-tests' output depends on besides the sources: its scripts, and the tsconfig esbuild reads. */
const BUILD_INPUTS = ['scripts/build-tests.mjs', 'scripts/test-build-stamp.mjs', 'scripts/vendor-test-packages.mjs', 'scripts/esbuild-node.mjs', 'tsconfig.json'];
/** What says which packages are installed, bundled into .test-build/node_modules: the lock file, patch-package's patches, tap's test class as `tap build` made it. */
const PACKAGE_INPUTS = ['package-lock.json', 'patches/undici+7.30.2.patch', 'node_modules/@tapjs/test/test-built/dist/esm/index.js'];

/** A repository with a source in src/ and test/ and the build's inputs, all saved a minute ago, and a compiled test that prints "ran". */
function repository(dir: string): { source: string; compiledTest: string } {
  const source = join(dir, 'test', 'b.test.ts');
  const compiledTest = join(dir, '.test-build', 'test', 'b.test.js');
  for (const file of [join(dir, 'src', 'a.ts'), source, ...[...BUILD_INPUTS, ...PACKAGE_INPUTS].map((name) => join(dir, name))]) {
    mkdirSync(join(file, '..'), { recursive: true });
    writeFileSync(file, 'export {};\n');
    setSavedAt(file, Date.now() / 1000 - 60);
  }
  mkdirSync(join(compiledTest, '..'), { recursive: true });
  writeFileSync(compiledTest, "console.log('ran');\n");
  return { source, compiledTest };
}

function setSavedAt(file: string, seconds: number): void {
  utimesSync(file, seconds, seconds);
}

interface StampModule {
  startStamp(out: string): void;
  finishStamp(out: string): void;
  staleTestBuild(script: string): string | undefined;
}
/** scripts/test-build-stamp.mjs, the repository's (the one build-tests and preload.mjs import). */
const stampModule = (): Promise<StampModule> => import(STAMP_MODULE) as Promise<StampModule>;

/** build-tests' stamp steps on `out`; `during` runs between them, as the build does. */
async function stamp(out: string, during: () => void = () => {}): Promise<void> {
  const { startStamp, finishStamp } = await stampModule();
  startStamp(out);
  during();
  finishStamp(out);
}

function runCompiled(compiledTest: string): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [`--import=${PRELOAD}`, compiledTest], { timeout: 30_000 }, (err, stdout) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout });
    });
  });
}

const REBUILD = /: run `node scripts\/build-tests\.mjs` in /;

t.test('compiled after every source: the test runs; a source saved since: refused, naming it', async (t) => {
  const dir = t.testdir();
  const { source, compiledTest } = repository(dir);
  await stamp(join(dir, '.test-build'));
  t.same(await runCompiled(compiledTest), { code: 0, stdout: 'ran\n' }, 'current: runs');

  writeFileSync(source, 'export const edited = true;\n');
  const stale = await runCompiled(compiledTest);
  t.equal(stale.code, 1, 'stale: fails');
  t.match(stale.stdout, /^Bail out! test\/b\.test\.ts was saved after \.test-build\/ was compiled/, 'a bail-out that names the source, ending the whole tap run');
  t.match(stale.stdout, REBUILD, 'says to rebuild');
  t.notMatch(stale.stdout, /ran/, 'the old code did not run');
});

t.test('a source saved while the tree was compiled (perhaps after esbuild read it): refused', async (t) => {
  const dir = t.testdir();
  const { source, compiledTest } = repository(dir);
  await stamp(join(dir, '.test-build'), () => writeFileSync(source, 'export const edited = true;\n'));
  const stale = await runCompiled(compiledTest);
  t.equal(stale.code, 1);
  t.match(stale.stdout, /test\/b\.test\.ts was saved after/);
});

/** Each of `inputs`, saved after the tree was compiled: the compiled test is refused, by a bail-out naming it and saying `why`. */
async function refusedOnceEdited(t: Test, inputs: readonly string[], why: string): Promise<void> {
  for (const input of inputs) {
    await t.test(input, async (t) => {
      const dir = t.testdir();
      const { compiledTest } = repository(dir);
      await stamp(join(dir, '.test-build'));
      // the first test runs a current tree's test through preload.mjs; here its check alone
      t.equal((await stampModule()).staleTestBuild(compiledTest), undefined, 'older than the tree: current');
      writeFileSync(join(dir, input), '// edited\n');
      const stale = await runCompiled(compiledTest);
      t.equal(stale.code, 1, 'edited since: fails');
      t.match(stale.stdout, new RegExp(`^Bail out! ${input.replace(/[.+]/g, '\\$&')} was saved after \\.test-build/ was compiled, ${why}`), 'a bail-out naming it');
      t.match(stale.stdout, REBUILD, 'says to rebuild');
    });
  }
}

t.test('a build input saved after the tree was compiled (the tree is the old build\'s output): refused, naming it', (t) => refusedOnceEdited(t, BUILD_INPUTS, "by the build's old version"));

t.test('packages installed after the tree was compiled (its node_modules/ bundles the old ones): refused, naming what changed', (t) =>
  refusedOnceEdited(t, PACKAGE_INPUTS, 'whose node_modules/ bundles the packages installed before'),
);

t.test('a tree with no stamp (its build failed): refused', async (t) => {
  const { compiledTest } = repository(t.testdir());
  const unstamped = await runCompiled(compiledTest);
  t.equal(unstamped.code, 1);
  t.match(unstamped.stdout, /has no compiled-sources-at stamp/);
  t.match(unstamped.stdout, REBUILD);
});

t.test('a script outside a compiled tree is not checked', async (t) => {
  const dir = t.testdir();
  repository(dir);
  const script = join(dir, 'test', 'plain.js');
  writeFileSync(script, "console.log('ran');\n");
  t.same(await runCompiled(script), { code: 0, stdout: 'ran\n' });
});
