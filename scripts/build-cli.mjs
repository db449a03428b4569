#!/usr/bin/env node
// Bundles the CLI (src/cli/bin.ts) and its dependencies into dist/cli/: bin.js, one module
// per command (loaded only when named, as src/cli/main.ts does) and the chunks they share.
// A command's module holds its options and help; what it does (servers, clients, the
// runner) it loads with import() as it runs, into chunks of their own: `--help` loads none.
// Node then starts a command in about half the time it takes to resolve and read the ~900
// files of src/ and node_modules one by one (0.35 s against 0.67 s for `cache --help`):
// every cache worker, every one-shot command on a machine, every server a test starts.
//
// Left out: ssh2 (it loads an optional native module by a path relative to itself).
// The files that code finds next to the package stay where they are: dist/native (the
// sendfile addon), dist/agent.mjs, examples/, and node_modules for xdelta3-wasm's .wasm
// and uPlot's files. dist/cli/ is two levels below the package root, as src/cli/ is, so
// the paths those modules compute from import.meta.url are the same in both.
//
// Names are not kept (esbuild's keepNames): it wraps every function expression in a call
// that defines its name, each time one is made, which cost a cold cache miss 15% more CPU
// (the closures made per request). Classes keep their names unless esbuild renames one
// (Foo2 for a clash, _Foo for one that refers to itself): harmless but in stack traces,
// except for error classes (they report new.target.name, logs show it), where the build
// fails instead.
//
// Whitespace and comments are left out (minifyWhitespace, not the renaming of minify): a
// cache's start reads and parses a third fewer bytes (3.2 MB → 2.1 MB), and Node decodes,
// scans and compiles each byte it loads; names stay as they are, in stack traces too, whose
// lines `node --enable-source-maps` maps back to src/.
//
// undici and prom-client come in through their core files, not their index.js (see
// scripts/cores.mjs); what fastify and undici require for HTTP/2 and HTTPS only, when first
// used (scripts/lazy-modules.mjs).
//
// Built into a temp directory and swapped in: a process starting meanwhile sees the old
// bundle or the new one, never half of each. What tsc wrote in dist/ before is removed.
//
// Skipped when dist/cli/ is as the last build left it and nothing it was built from changed
// (dist/cli.built.json, bundleInputs in scripts/build-record.mjs).
//
// Usage: node scripts/build-cli.mjs
import { readdir, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleInputs, bundleKey, filesUnder, isCurrent, startRecord, writeRecord } from './build-record.mjs';
import { checkCores, cores, sourceTexts } from './cores.mjs';
import { NODE_ESM } from './esbuild-node.mjs';
import { lazyModules } from './lazy-modules.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'dist/cli');
const RECORD = join(ROOT, 'dist/cli.built.json');
const KEY = bundleKey('cli');

/** The error classes declared in src/: those whose `extends` chain reaches Error. */
async function sourceErrorClasses() {
  const parents = new Map();
  for (const text of await sourceTexts()) {
    for (const m of text.matchAll(/^\s*(?:export\s+)?(?:abstract\s+)?class\s+([A-Za-z_$][\w$]*)(?:\s+extends\s+([A-Za-z_$][\w$]*))?/gm)) parents.set(m[1], m[2]);
  }
  const isError = (name, seen = new Set()) => name === 'Error' || (name !== undefined && !seen.has(name) && isError(parents.get(name), seen.add(name)));
  return new Set([...parents.keys()].filter((name) => isError(parents.get(name))));
}

/**
 * Fails when an error class of src/ has another name in the bundle in `dir`: esbuild renames
 * one that clashes with another of its chunk (`var Foo2 = class`) and gives one that refers
 * to itself an inner name (`var Foo = class _Foo`), which is then its .name.
 */
async function checkErrorClassNames(dir) {
  const classes = await sourceErrorClasses();
  for (const file of (await readdir(dir)).filter((name) => name.endsWith('.js'))) {
    const code = await readFile(join(dir, file), 'utf8');
    for (const m of code.matchAll(/\b(?:var ([A-Za-z_$][\w$]*)\s*=\s*class(?: (?!extends\b)([A-Za-z_$][\w$]*))?|class ([A-Za-z_$][\w$]*))[\s{]/g)) {
      const name = m[2] ?? m[1] ?? m[3];
      const source = name.replace(/^_/, '').replace(/\d+$/, '');
      if (name !== source && classes.has(source) && !classes.has(name)) {
        throw new Error(`build-cli: the error class ${source} is named ${name} in ${file} (esbuild renamed it): its .name, and the "type" of logged errors, would be wrong; rename it or what it clashes with, or make it not refer to itself`);
      }
    }
  }
}

/**
 * Removes what tsc wrote in dist/ before the CLI was bundled (one .js per module, a
 * directory per part of src/): nothing loads it, and `npm pack` would ship it.
 */
async function removeTscOutput() {
  const dist = dirname(OUT);
  for (const entry of await readdir(dist, { withFileTypes: true })) {
    const stale = entry.isDirectory() ? !['cli', 'native'].includes(entry.name) && !entry.name.startsWith('cli.') : /\.(?:js|js\.map|d\.ts)$/.test(entry.name);
    if (stale) await rm(join(dist, entry.name), { recursive: true, force: true });
  }
}

if (isCurrent(RECORD, KEY)) process.exit(0);
const startedNs = startRecord(RECORD);
const temp = `${OUT}.${process.pid}.tmp`;
const old = `${OUT}.${process.pid}.old`;
try {
  await checkCores();
  const { metafile } = await (await import('esbuild')).build({
    ...NODE_ESM,
    entryPoints: [join(ROOT, 'src/cli/bin.ts')],
    outdir: temp,
    splitting: true,
    external: ['ssh2'],
    sourcemap: 'linked',
    keepNames: false,
    minifyWhitespace: true,
    metafile: true,
    plugins: [cores, lazyModules],
  });
  await checkErrorClassNames(temp);
  await rename(OUT, old).catch((err) => {
    if (err.code !== 'ENOENT') throw err;
  });
  await rename(temp, OUT);
  await removeTscOutput();
  writeRecord(RECORD, KEY, { inputs: bundleInputs(metafile, fileURLToPath(import.meta.url)), outputs: [OUT, ...filesUnder(OUT)] }, startedNs);
} finally {
  await rm(temp, { recursive: true, force: true });
  await rm(old, { recursive: true, force: true });
}
