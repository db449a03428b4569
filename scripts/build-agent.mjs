#!/usr/bin/env node
// Bundles the machine agent (src/agent/main.ts) into dist/agent.mjs: one self-contained ESM
// file for Node 20 that the runner sends over SFTP to machines without node_modules.
// A command's code is imported with import() by src/agent/commands.ts: without code splitting
// esbuild keeps it in the file and evaluates it only when imported: `version` evaluates
// neither the transfers nor undici, `artifacts` not the pull's code.
//
// xdelta3-wasm's module is embedded: src/delta/wasm.ts finds the .wasm through
// node_modules at run time, which a machine does not have, so this build feeds the bytes
// in (esbuild's binary loader) by a checked edit of that one function in the bundle only.
// If the source no longer has the expected shape, the build fails instead of shipping an
// agent that cannot apply deltas.
//
// undici comes in through scripts/undici-core.cjs, as in the CLI's bundle (scripts/cores.mjs):
// its index.js brought fetch, WebSocket, cookies, the cache stores and the mocks, a third
// of the bytes every machine parses at each start of the agent.
//
// Skipped when OUTFILE is as the last build left it and nothing it was built from changed
// (OUTFILE.built.json, see scripts/build-record.mjs and scripts/build-cli.mjs).
//
// Usage: node scripts/build-agent.mjs [OUTFILE]   (default: dist/agent.mjs)
import { readdirSync } from 'node:fs';
import { readFile, rename, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleInputs, bundleKey, isCurrent, startRecord, writeRecord } from './build-record.mjs';
import { checkCores, cores } from './cores.mjs';
import { NODE_ESM } from './esbuild-node.mjs';
import { lazyModules } from './lazy-modules.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ENTRY = join(ROOT, 'src/agent/main.ts');
const EMBEDDED = 'fleetcache-embedded:xdelta3.wasm';
const ANCHOR = 'function moduleBytes(): Uint8Array {\n  if (!originalModule) {';
const KEY = bundleKey('agent');

function xdelta3WasmFile() {
  const dist = join(dirname(createRequire(import.meta.url).resolve('xdelta3-wasm/package.json')), 'dist');
  const file = readdirSync(dist).find((name) => name.endsWith('.wasm'));
  if (!file) throw new Error(`build-agent: no .wasm file in ${dist}`);
  return join(dist, file);
}

/** Makes moduleBytes() in src/delta/wasm.ts return the embedded module. */
const embedXdelta3 = {
  name: 'embed-xdelta3-wasm',
  setup(build) {
    build.onResolve({ filter: /^fleetcache-embedded:xdelta3\.wasm$/ }, () => ({ path: xdelta3WasmFile() }));
    build.onLoad({ filter: /[\\/]src[\\/]delta[\\/]wasm\.ts$/ }, async (args) => {
      const source = await readFile(args.path, 'utf8');
      if (!source.includes(ANCHOR)) {
        throw new Error(`build-agent: ${args.path} no longer contains "${ANCHOR.split('\n')[0]}…"; update scripts/build-agent.mjs`);
      }
      const patched =
        `import embeddedXdelta3Wasm from '${EMBEDDED}';\n` +
        source.replace(ANCHOR, `function moduleBytes(): Uint8Array {\n  originalModule ??= embeddedXdelta3Wasm;\n  if (!originalModule) {`);
      return { contents: patched, loader: 'ts', resolveDir: dirname(args.path) };
    });
  },
};

/** Builds the bundle unless current; written to a temp name and renamed, so concurrent builds never expose half a file. */
export async function buildAgent(outfile = join(ROOT, 'dist/agent.mjs')) {
  const record = `${outfile}.built.json`;
  if (isCurrent(record, KEY)) return outfile;
  const startedNs = startRecord(record);
  const temp = `${outfile}.${process.pid}.tmp`;
  try {
    await checkCores();
    const { metafile } = await (await import('esbuild')).build({
      ...NODE_ESM,
      entryPoints: [ENTRY],
      outfile: temp,
      loader: { '.wasm': 'binary' },
      plugins: [embedXdelta3, cores, lazyModules],
      minify: true, // half the bytes to send to every machine
      metafile: true,
    });
    await rename(temp, outfile);
    writeRecord(record, KEY, { inputs: bundleInputs(metafile, fileURLToPath(import.meta.url)), outputs: [outfile] }, startedNs);
  } finally {
    await rm(temp, { force: true });
  }
  return outfile;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = await buildAgent(process.argv[2] ? resolve(process.argv[2]) : undefined);
  process.stdout.write(`${out}\n`);
}
