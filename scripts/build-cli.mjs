#!/usr/bin/env node
// Bundles the CLI (src/cli/bin.ts) and its dependencies into dist/cli/: bin.js, one module
// per command (loaded only when named, as src/cli/main.ts does) and the chunks they share.
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
// (the closures made per request). Classes keep their names (error classes report
// new.target.name) unless esbuild renames one that clashes with another of its chunk
// (Foo → Foo2): the build fails then, naming it.
//
// Built into a temp directory and swapped in: a process starting meanwhile sees the old
// bundle or the new one, never half of each.
//
// Usage: node scripts/build-cli.mjs
import { readdir, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { NODE_ESM } from './esbuild-node.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'dist/cli');

/** The names of the classes declared in src/. */
async function sourceClasses(dir = join(ROOT, 'src'), names = new Set()) {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await sourceClasses(path, names);
    else if (entry.name.endsWith('.ts')) {
      for (const m of (await readFile(path, 'utf8')).matchAll(/^\s*(?:export\s+)?(?:abstract\s+)?class\s+([A-Za-z_$][\w$]*)/gm)) names.add(m[1]);
    }
  }
  return names;
}

/** Fails when the bundle in `dir` renamed a class of src/ (`var Foo2 = class`, `class Foo2 `). */
async function checkClassNames(dir) {
  const classes = await sourceClasses();
  for (const file of (await readdir(dir)).filter((name) => name.endsWith('.js'))) {
    const code = await readFile(join(dir, file), 'utf8');
    for (const m of code.matchAll(/(?:\bvar ([A-Za-z_$][\w$]*?)\d+ = class\b|\bclass ([A-Za-z_$][\w$]*?)\d+[\s{])/g)) {
      const base = m[1] ?? m[2];
      const renamed = m[0].match(/[A-Za-z_$][\w$]*\d+(?= = class|[\s{]$)/)?.[0];
      if (classes.has(base) && renamed && !classes.has(renamed)) {
        throw new Error(`build-cli: esbuild renamed the class ${base} to ${renamed} in ${file} (another of that name in the chunk): its .name would be wrong; rename one of them`);
      }
    }
  }
}

const temp = `${OUT}.${process.pid}.tmp`;
const old = `${OUT}.${process.pid}.old`;
try {
  await esbuild.build({
    ...NODE_ESM,
    entryPoints: [join(ROOT, 'src/cli/bin.ts')],
    outdir: temp,
    splitting: true,
    external: ['ssh2'],
    sourcemap: 'linked',
    keepNames: false,
  });
  await checkClassNames(temp);
  await rename(OUT, old).catch((err) => {
    if (err.code !== 'ENOENT') throw err;
  });
  await rename(temp, OUT);
} finally {
  await rm(temp, { recursive: true, force: true });
  await rm(old, { recursive: true, force: true });
}
