#!/usr/bin/env node
// Compiles src/native/sendfile.c into dist/native/sendfile.node, the zero-copy path of
// large response bodies (src/http/zero-copy.ts). One C file against Node-API and libc
// only, so the C compiler is called directly: node-gyp would add Python and a download of
// Node's headers, which the Node installation already has (include/node).
//
// Optional by design: without a compiler or the headers (or off Linux), it says so on
// stderr and the servers send bodies through buffers instead. FLEETCACHE_REQUIRE_NATIVE=1
// makes that a failure (CI, where the zero-copy path is under test).
//
// Skipped when OUTPUT is as the last build left it and neither the source, the headers the
// compiler read (its -MD list), the compiler, its flags nor Node changed (OUTPUT.built.json,
// scripts/build-record.mjs).
//
// Usage: node scripts/build-native.mjs [OUTPUT]   (default dist/native/sendfile.node; tests
// build elsewhere, so as not to touch the addon the other tests load)
import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, realpathSync, renameSync, rmSync } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isCurrent, startRecord, writeRecord } from './build-record.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SOURCE = join(ROOT, 'src/native/sendfile.c');
const OUT = resolve(process.argv[2] ?? join(ROOT, 'dist/native/sendfile.node'));
const RECORD = `${OUT}.built.json`;

function skip(reason) {
  const required = process.env.FLEETCACHE_REQUIRE_NATIVE === '1';
  process.stderr.write(`build-native: ${reason}; ${required ? 'FLEETCACHE_REQUIRE_NATIVE=1: failing' : 'large bodies will be sent through buffers, without sendfile'}\n`);
  rmSync(OUT, { force: true }); // never a stale addon from an older source
  rmSync(RECORD, { force: true });
  process.exit(required ? 1 : 0);
}

if (process.platform !== 'linux') skip(`sendfile to a socket is built for Linux only, not ${process.platform}`);
const headers = [process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include/node'), resolve(dirname(process.execPath), '../include/node')].find(
  (dir) => dir && existsSync(join(dir, 'node_api.h')),
);
if (!headers) skip(`no node_api.h next to ${process.execPath} (../include/node)`);
const cc = process.env.CC || 'cc';
const FLAGS = ['-O2', '-std=c11', '-D_GNU_SOURCE', '-Wall', '-Wextra', '-fPIC', '-shared', '-pthread', '-fvisibility=hidden', `-I${headers}`];

/** The compiler's file (`cc` as the PATH finds it), undefined when there is none. */
function compilerFile() {
  for (const dir of cc.includes('/') ? [''] : (process.env.PATH ?? '').split(delimiter)) {
    try {
      const file = resolve(dir, cc);
      accessSync(file, constants.X_OK);
      return realpathSync(file);
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

const KEY = { step: 'native', cc, compiler: compilerFile(), flags: FLAGS };
if (isCurrent(RECORD, KEY)) process.exit(0);
mkdirSync(dirname(OUT), { recursive: true });
const startedNs = startRecord(RECORD);
const tmp = `${OUT}.${process.pid}.tmp`;
const depfile = `${tmp}.d`; // the files the compiler read, in make's syntax (-MD)
try {
  execFileSync(cc, [...FLAGS, '-MD', '-MF', depfile, '-o', tmp, SOURCE], { stdio: ['ignore', 'inherit', 'inherit'] });
} catch (err) {
  rmSync(tmp, { force: true });
  rmSync(depfile, { force: true });
  skip(err.code === 'ENOENT' ? `no C compiler (${cc})` : `${cc} failed`);
}
renameSync(tmp, OUT);
if (existsSync(depfile)) {
  const read = readFileSync(depfile, 'utf8').replace(/\\\n/g, ' ').split(/\s+/).filter((word) => word && !word.endsWith(':'));
  rmSync(depfile);
  writeRecord(RECORD, KEY, { inputs: [SOURCE, ...read.map((file) => resolve(file)), ...(KEY.compiler ? [KEY.compiler] : []), fileURLToPath(import.meta.url)], outputs: [OUT] }, startedNs);
}
