// Compiles src/ and test/ to plain JavaScript under .test-build/, file by file, for `npm test`.
//
// A test file run through tsx spends about 1.1 s of CPU before its first test: the loader's
// hooks see every module node loads, dependencies included, on a thread of their own. The
// suite runs 150 files on 2 cores and is CPU-bound, so that was a sixth of its time. The
// compiled files keep the layout of the repository (.test-build/src, .test-build/test), so
// every relative import and every `new URL('../..', import.meta.url)` lands where it does
// from the source; what the code reaches that way (dist, examples, scripts, bin,
// package.json) is a link to the repository's own. Tests that need the repository itself (a
// working directory) take REPO_ROOT (test/helpers/processes.ts), which is the same from
// either tree; a child that runs a module of src/ or test/ runs its compiled copy here
// (treeModule there), without tsx. Source maps point back to the .ts files.
//
// The heavy packages those files import are bundled into .test-build/node_modules/, which
// Node finds first from there (scripts/vendor-test-packages.mjs).
//
// `npx tap test/x.test.ts` still runs one file from source (test/helpers/preload.mjs). A
// compiled test refuses to run when a source, or an input of the build (this file,
// scripts/test-build-stamp.mjs, tsconfig.json, package-lock.json...), is newer than this build
// (scripts/test-build-stamp.mjs, checked by test/helpers/preload.mjs).
import { mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { finishStamp, startStamp, typescriptFiles } from './test-build-stamp.mjs';
import { vendorTestPackages } from './vendor-test-packages.mjs';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const OUT = join(ROOT, '.test-build');
const LINKED = ['dist', 'examples', 'scripts', 'bin', 'package.json'];

rmSync(OUT, { recursive: true, force: true });
mkdirSync(OUT);
startStamp(OUT);
await build({
  entryPoints: [...typescriptFiles(join(ROOT, 'src')), ...typescriptFiles(join(ROOT, 'test'))],
  outdir: OUT,
  outbase: ROOT,
  bundle: false,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // esbuild takes node20 for an engine without them and would drop `with { type: 'json' }`
  supported: { 'import-attributes': true },
  sourcemap: 'inline',
  sourcesContent: false,
  // as tsx: class and function names are kept (errors report new.target.name)
  keepNames: true,
  logLevel: 'warning',
});
for (const name of LINKED) symlinkSync(relative(OUT, join(ROOT, name)), join(OUT, name));
await vendorTestPackages(OUT);
finishStamp(OUT);
