// Delta upload size and encode time on real data: pairs of published npm packages, unpacked
// and re-packed by our deterministic packer (one pair above one segment, 32 MiB: a tree of
// two packages side by side, as a project that vendors them). Anchors, side by side in one run: the full tar,
// gzip -9, Debian's `xdelta3 -9 -S djw`, and `zstd -19 --patch-from`.
// Goal (issue 4): our upload ≤ 0.9× xdelta3 -9 -S djw, our encode time ≤ 3× native xdelta3.
//
//   node --import tsx bench/delta.ts [--append]     (--append adds the table to bench/RESULTS.md)
//   node --import tsx bench/delta.ts --large [--append]   (1 GiB synthetic base and target instead)
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import { compressDelta, type Compression } from '../src/delta/compress.js';
import { decodeVcdiffToFile } from '../src/delta/vcdiff-decode.js';
import { encodeDelta } from '../src/delta/xdelta.js';
import { packToFile } from '../src/pack/packer.js';
import { today } from './lib/today.js';

/** One side of a pair: npm packages [name, version]; two or more go side by side in one tree, each in a directory of its name. */
type Side = ReadonlyArray<readonly [string, string]>;
const PAIRS: ReadonlyArray<readonly [Side, Side]> = [
  [[['fastify', '5.0.0']], [['fastify', '5.2.1']]],
  [[['typescript', '5.4.5']], [['typescript', '5.5.4']]],
  [[['typescript', '5.5.4']], [['typescript', '5.6.3']]],
  // above one segment (32 MiB, 124 MB): a project that vendors typescript and next.js
  [[['typescript', '5.4.5'], ['next', '14.2.3']], [['typescript', '5.5.4'], ['next', '14.2.5']]],
];

const work = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'fleetcache-bench');
mkdirSync(work, { recursive: true });

/** npm pack (registry only), unpacked into `dir`, cached between runs. */
function unpackInto(name: string, version: string, dir: string): void {
  const tgz = join(work, `${name}-${version}.tgz`);
  if (!existsSync(tgz)) {
    const produced = join(work, execFileSync('npm', ['pack', `${name}@${version}`, '--pack-destination', work, '--silent'], { encoding: 'utf8' }).trim().split('\n').pop() ?? '');
    if (produced !== tgz) renameSync(produced, tgz);
  }
  mkdirSync(dir, { recursive: true });
  if (readdirSync(dir).length === 0) execFileSync('tar', ['-xzf', tgz, '-C', dir]);
}

const sideName = (side: Side): string => side.map(([name, version]) => `${name}-${version}`).join('+');

/** The side's tree re-packed with our packer; cached between runs. */
async function projectTar(side: Side): Promise<string> {
  const tar = join(work, `${sideName(side)}.tar`);
  if (existsSync(tar)) return tar;
  const dir = join(work, sideName(side));
  const [only, ...others] = side;
  if (only && others.length === 0) unpackInto(only[0], only[1], dir);
  else for (const [name, version] of side) unpackInto(name, version, join(dir, name));
  await packToFile(dir, tar);
  return tar;
}

/** `fastify 5.0.0→5.2.1`; `a 1→2 + b 3→4 (one tree)` for sides of several packages. */
function pairName(from: Side, to: Side): string {
  const each = from.map(([name, version], i) => `${name} ${version}→${to[i]?.[1]}`);
  return each.length === 1 ? (each[0] as string) : `${each.join(' + ')} (one tree)`;
}

function size(file: string): number {
  return statSync(file).size;
}

/** Runs a command `runs` times and returns the best wall time in ms. */
function timed(cmd: string, args: string[], runs: number): number {
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    execFileSync(cmd, args, { stdio: 'ignore' });
    best = Math.min(best, performance.now() - start);
  }
  return best;
}

interface Row {
  readonly pair: string;
  readonly tar: number;
  readonly gzip9: number;
  readonly ours: Record<Compression, number>;
  readonly oursMs: Record<Compression, number>;
  readonly level: number;
  readonly xdelta: number;
  readonly xdeltaMs: number;
  readonly zstd: number;
  readonly zstdMs: number;
}

async function measure(from: Side, to: Side): Promise<Row> {
  const a = await projectTar(from);
  const b = await projectTar(to);
  const gzip9 = Number(execFileSync('sh', ['-c', `gzip -9 -c "$1" | wc -c`, 'sh', b], { encoding: 'utf8' }).trim());
  const ours = { none: 0, gzip: 0, brotli: 0 };
  const oursMs = { none: Infinity, gzip: Infinity, brotli: Infinity };
  let level = 9;
  for (let i = 0; i < 3; i++) {
    const start = performance.now();
    const vcdiffFile = join(work, 'out.vcdiff');
    const encoded = await encodeDelta({ path: a }, { path: b }, vcdiffFile);
    const encodeMs = performance.now() - start;
    level = encoded.level;
    for (const c of ['none', 'gzip', 'brotli'] as const) {
      const cStart = performance.now();
      ours[c] = (await compressDelta(vcdiffFile, join(work, `out.${c}`), c)).size;
      oursMs[c] = Math.min(oursMs[c], encodeMs + performance.now() - cStart);
    }
  }
  const xOut = join(work, 'out.xdelta');
  const xdeltaMs = timed('xdelta3', ['-e', '-9', '-S', 'djw', '-f', '-s', a, b, xOut], 3);
  const zOut = join(work, 'out.zst');
  // one run: zstd -19 takes up to a minute on the larger pairs
  const zstdMs = timed('zstd', ['-q', '-f', '-19', `--patch-from=${a}`, b, '-o', zOut], 1);
  return { pair: pairName(from, to), tar: size(b), gzip9, ours, oursMs, level, xdelta: size(xOut), xdeltaMs, zstd: size(zOut), zstdMs };
}

function table(rows: Row[]): string {
  const f = (n: number) => n.toLocaleString('en-US');
  const ms = (n: number) => `${n.toFixed(0)} ms`;
  const lines = [
    '| pair | tar | gzip -9 | ours brotli | ours gzip | ours raw VCDIFF | xdelta3 -9 -S djw | zstd -19 --patch-from | ours brotli ÷ xdelta3 size | ours encode ÷ xdelta3 time |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.pair} | ${f(r.tar)} | ${f(r.gzip9)} | ${f(r.ours.brotli)} (${ms(r.oursMs.brotli)}) | ${f(r.ours.gzip)} (${ms(r.oursMs.gzip)}) | ${f(r.ours.none)} (${ms(r.oursMs.none)}, level ${r.level}) | ` +
        `${f(r.xdelta)} (${ms(r.xdeltaMs)}) | ${f(r.zstd)} (${ms(r.zstdMs)}) | ${(r.ours.brotli / r.xdelta).toFixed(2)}× | ${(r.oursMs.brotli / r.xdeltaMs).toFixed(2)}× |`,
    );
  }
  return lines.join('\n');
}

/** The size limit case: a 1 GiB base and a target with a few edits, through wasm memory. */
async function large(): Promise<string> {
  const size = 1 << 30;
  const base = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 1 << 20) randomFillSync(base, i, 1 << 20);
  const target = Buffer.concat([base.subarray(0, size / 2), randomBytes(4096), base.subarray(size / 2 + 4096)]);
  const expected = createHash('sha256').update(target).digest('hex');
  const baseFile = join(work, 'large-base');
  const outFile = join(work, 'large-out');
  const vcdiffFile = join(work, 'large.vcdiff');
  const start = performance.now();
  const { size: vcdiffSize, level, memoryBytes, windows } = await encodeDelta(base, target, vcdiffFile);
  const encodeMs = performance.now() - start;
  const vcdiff = readFileSync(vcdiffFile);
  writeFileSync(baseFile, base);
  const decodeStart = performance.now();
  const ok = (await decodeVcdiffToFile(baseFile, vcdiff, outFile)).digests['sha256'] === expected;
  const decodeMs = performance.now() - decodeStart;
  rmSync(baseFile);
  rmSync(outFile);
  if (!ok) throw new Error('1 GiB round trip: digest mismatch');
  return `1 GiB random base, target with a 4 KiB edit: encode ${(encodeMs / 1000).toFixed(1)} s at level ${level} in ${windows} windows with ${(memoryBytes / 2 ** 20).toFixed(0)} MiB of wasm memory, VCDIFF ${vcdiffSize} bytes, decode (streaming, from the base file into a file) ${(decodeMs / 1000).toFixed(1)} s, result verified.`;
}

let text: string;
if (process.argv.includes('--large')) {
  text = await large();
} else {
  const rows: Row[] = [];
  for (const [from, to] of PAIRS) {
    const row = await measure(from, to);
    rows.push(row);
    process.stderr.write(`${row.pair}: done\n`);
  }
  text = table(rows);
}
process.stdout.write(`${text}\n`);
if (process.argv.includes('--append') && process.argv.includes('--large')) {
  appendFileSync(join(import.meta.dirname, 'RESULTS.md'), `\nDelta size limit (${today()}, \`node --import tsx bench/delta.ts --large --append\`): ${text}\n`);
} else if (process.argv.includes('--append')) {
  const versions = execFileSync('sh', ['-c', "xdelta3 -V 2>&1 | grep -o 'version [0-9.]*' | head -1; zstd -V | grep -o 'v[0-9.]*'"], { encoding: 'utf8' }).trim().replace(/\n/g, ', zstd ').replace(/^/, 'xdelta3 ');
  appendFileSync(
    join(import.meta.dirname, 'RESULTS.md'),
    `\n## Delta-repacked uploads (issue 4) — ${today()}\n\n` +
      `Command: \`node --import tsx bench/delta.ts --append\` (${versions}; Node ${process.version}; 2 cores). ` +
      `Packages from \`npm pack\`, unpacked and re-packed by our packer; sizes in bytes of the new version; times are the best of 3 wall-clock runs (zstd: 1 run), ` +
      `ours = xdelta3-wasm encode + node:zlib compression, in process.\n\n${text}\n`,
  );
}
