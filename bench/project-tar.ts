// Project pack (what `fleetcache push` and `run` do before the upload) and unpack (what
// `fleetcache pull` and the agent do on every machine) against GNU tar on the same disk: a
// tree of many small files (the shape of a source tree), packed and unpacked by each side
// in turn for ROUNDS rounds; medians compared.
//
//   node --import tsx bench/project-tar.ts [--append]     (--append adds the table to bench/RESULTS.md)
import { execFileSync } from 'node:child_process';
import { appendFileSync, createReadStream, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { packToFile } from '../src/pack/packer.js';
import { unpackTar } from '../src/pack/unpack.js';
import { benchDir } from './lib/processes.js';
import { median } from './lib/small-objects.js';
import { today } from './lib/today.js';

const DIRS = 2000;
const FILES_PER_DIR = 10;
const FILE_BYTES = 2000;
const ROUNDS = 5;

async function main(): Promise<void> {
  const { dir, remove } = benchDir('fleetcache-unpack-');
  try {
    const tree = join(dir, 'tree');
    for (let d = 0; d < DIRS; d++) {
      const sub = join(tree, `m${d % 40}`, `p${d}`);
      mkdirSync(sub, { recursive: true });
      for (let f = 0; f < FILES_PER_DIR; f++) writeFileSync(join(sub, `f${f}.txt`), `${d}/${f}\n`.padEnd(FILE_BYTES, 'x'));
    }
    const tar = join(dir, 'tree.tar');
    const gnuTar = join(dir, 'gnu.tar');
    const out = join(dir, 'out');
    const times = { pack: { ours: [] as number[], gnu: [] as number[] }, unpack: { ours: [] as number[], gnu: [] as number[] } };
    const timed = async (into: number[], work: () => unknown): Promise<void> => {
      const t0 = performance.now();
      await work();
      into.push(performance.now() - t0);
    };
    for (let r = 0; r < ROUNDS; r++) {
      await timed(times.pack.ours, () => packToFile(tree, tar));
      await timed(times.pack.gnu, () => execFileSync('tar', ['cf', gnuTar, '-C', tree, '.']));
      rmSync(out, { recursive: true, force: true });
      await timed(times.unpack.ours, () => unpackTar(createReadStream(tar), out));
      rmSync(out, { recursive: true, force: true });
      mkdirSync(out);
      await timed(times.unpack.gnu, () => execFileSync('tar', ['xf', tar, '-C', out]));
      const last = (side: number[]): string => side.at(-1)!.toFixed(0);
      process.stderr.write(`round ${r + 1}: pack ${last(times.pack.ours)} ms against ${last(times.pack.gnu)} ms, unpack ${last(times.unpack.ours)} ms against ${last(times.unpack.gnu)} ms\n`);
    }
    const files = DIRS * FILES_PER_DIR;
    const row = (what: 'pack' | 'unpack'): string => {
      const [o, g] = [median(times[what].ours)!, median(times[what].gnu)!]; // ROUNDS > 0
      return `| ${what} ${files} small files, ms | ${o.toFixed(0)} | ${g.toFixed(0)} | ${(o / g).toFixed(2)}× |`;
    };
    const table = `
## project pack and unpack vs GNU tar — ${today()}

Command: \`node --import tsx bench/project-tar.ts --append\`. ${files} files of ${FILE_BYTES} bytes in ${DIRS} directories,
on the same disk; each round packs with src/pack/packer.ts (as push and run do) and then with \`tar cf\`,
unpacks our tar with src/pack/unpack.ts (as pull and the agent do) and then with \`tar xf\`; median of ${ROUNDS} rounds.

| figure | fleetcache | GNU tar | ratio (time) |
| --- | ---: | ---: | ---: |
${row('pack')}
${row('unpack')}
`;
    process.stdout.write(table);
    if (process.argv.includes('--append')) appendFileSync(join(import.meta.dirname, 'RESULTS.md'), table);
  } finally {
    remove();
  }
}

await main();
