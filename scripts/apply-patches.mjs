#!/usr/bin/env node
// The build's first step: `patch-package --error-on-fail` (patches/, applied to node_modules
// before the bundles take the patched files in), skipped when the patches, and the files they
// patched as the last run left them, are all as they were (dist/patches.built.json,
// scripts/build-record.mjs): an install that replaces a patched file changes it.
//
// Usage: node scripts/apply-patches.mjs
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { filesUnder, isCurrent, packageFiles, ROOT, startRecord, writeRecord } from './build-record.mjs';

const RECORD = join(ROOT, 'dist/patches.built.json');
const PATCHES = join(ROOT, 'patches');
const require = createRequire(import.meta.url);
const KEY = { step: 'patches', patchPackage: require('patch-package/package.json').version };

if (isCurrent(RECORD, KEY)) process.exit(0);
const startedNs = startRecord(RECORD);
const run = spawnSync(process.execPath, [require.resolve('patch-package/index.js'), '--error-on-fail'], { cwd: ROOT, stdio: 'inherit' });
if (run.status !== 0) process.exit(run.status ?? 1);
const patches = filesUnder(PATCHES, ['.patch']);
// the files a patch changes: its "+++ b/node_modules/…" lines
const patched = patches.filter((file) => file.endsWith('.patch')).flatMap((file) => [...readFileSync(file, 'utf8').matchAll(/^\+\+\+ b\/(.+)$/gm)].map((m) => join(ROOT, m[1])));
writeRecord(RECORD, KEY, { inputs: [PATCHES, ...patches, ...packageFiles(patched), join(ROOT, 'node_modules/.package-lock.json')], outputs: patched }, startedNs);
