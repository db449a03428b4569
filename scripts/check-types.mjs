#!/usr/bin/env node
// The build's type check, its last step: `tsc -p tsconfig.build.json` (incremental), skipped
// when the files it read last time it passed are all as they were (dist/types.built.json,
// scripts/build-record.mjs): the files of its program (--listFiles: src/, the .d.ts of
// node_modules and of TypeScript), their packages' package.json and the tsconfigs. Even
// incremental, tsc parses every file of the program again: seconds of CPU for nothing.
//
// Usage: node scripts/check-types.mjs
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isAbsolute, join } from 'node:path';
import { isCurrent, PACKAGE_INPUTS, packageFiles, ROOT, startRecord, writeRecord } from './build-record.mjs';

const RECORD = join(ROOT, 'dist/types.built.json');
const TSC = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const KEY = { step: 'types', typescript: createRequire(import.meta.url)('typescript/package.json').version };

if (isCurrent(RECORD, KEY)) process.exit(0);
const startedNs = startRecord(RECORD);
const args = [TSC, '-p', 'tsconfig.build.json', '--listFiles', ...(process.stdout.isTTY ? ['--pretty'] : [])];
const tsc = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'inherit'] });
// --listFiles prints the program's files (absolute paths) among the diagnostics: only these are shown
const lines = (tsc.stdout ?? '').split('\n');
const listed = new Set(lines.filter((line) => isAbsolute(line) && existsSync(line)));
process.stdout.write(lines.filter((line) => !listed.has(line)).join('\n'));
if (tsc.status !== 0) {
  if (tsc.error) process.stderr.write(`check-types: ${tsc.error.message}\n`);
  process.exit(tsc.status ?? 1);
}
const inputs = [...listed, ...packageFiles([...listed]), ...PACKAGE_INPUTS, join(ROOT, 'tsconfig.build.json'), TSC];
writeRecord(RECORD, KEY, { inputs, outputs: [] }, startedNs);
