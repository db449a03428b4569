// Project unpack (what `fleetcache pull` and the agent do on every machine) against GNU tar
// on the same disk: a tree of many small files (the shape of a source tree), packed by our
// packer, unpacked by each side in turn for ROUNDS rounds; medians compared.
//
//   node --import tsx bench/unpack.ts [--append]     (--append adds the table to bench/RESULTS.md)
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
    await packToFile(tree, tar);
    const out = join(dir, 'out');
    const ours: number[] = [];
    const gnu: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      rmSync(out, { recursive: true, force: true });
      let t0 = performance.now();
      await unpackTar(createReadStream(tar), out);
      ours.push(performance.now() - t0);
      rmSync(out, { recursive: true, force: true });
      mkdirSync(out);
      t0 = performance.now();
      execFileSync('tar', ['xf', tar, '-C', out]);
      gnu.push(performance.now() - t0);
      process.stderr.write(`round ${r + 1}: fleetcache ${ours.at(-1)!.toFixed(0)} ms, GNU tar ${gnu.at(-1)!.toFixed(0)} ms\n`);
    }
    const files = DIRS * FILES_PER_DIR;
    const [o, g] = [median(ours)!, median(gnu)!]; // ROUNDS > 0
    const table = `
## project unpack vs GNU tar — ${today()}

Command: \`node --import tsx bench/unpack.ts --append\`. ${files} files of ${FILE_BYTES} bytes in ${DIRS} directories,
packed by our packer; each round unpacks with src/pack/unpack.ts (as pull and the agent do) and then with
\`tar xf\`, into the same directory on the same disk; median of ${ROUNDS} rounds.

| figure | fleetcache | GNU tar | ratio (time) |
| --- | ---: | ---: | ---: |
| unpack ${files} small files, ms | ${o.toFixed(0)} | ${g.toFixed(0)} | ${(o / g).toFixed(2)}× |
`;
    process.stdout.write(table);
    if (process.argv.includes('--append')) appendFileSync(join(import.meta.dirname, 'RESULTS.md'), table);
  } finally {
    remove();
  }
}

await main();
