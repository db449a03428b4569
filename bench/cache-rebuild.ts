// The cache's start-up: how long DiskStore.open() takes to rebuild its index from a data
// directory of 100,000 objects (issue: under 5 s). The objects are real files in the
// cache's layout (small /cas blobs, and http entries with their sidecars, 9 to 1), written
// first and then dropped from the page cache when this runs as root, so the rebuild reads
// the directories from disk as after a reboot.
// Run: node --import tsx bench/cache-rebuild.ts [--objects N] [--append]
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { appendFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { pino } from 'pino';
import { DiskStore, casId, httpId } from '../src/cache/disk-store.js';
import { today } from './lib/today.js';

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const OBJECTS = Number(arg('--objects') ?? 100_000);

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'fleetcache-bench-rebuild-'));
  try {
    process.stderr.write(`writing ${OBJECTS} objects\n`);
    const made = new Set<string>();
    const body = Buffer.alloc(4096, 1);
    for (let i = 0; i < OBJECTS; i++) {
      const seed = createHash('sha256').update(String(i)).digest('hex');
      const id = i % 10 === 9 ? httpId(`GET /artifacts/run/${i}`) : casId({ algo: 'sha256', hex: seed });
      const file = path.join(dir, id);
      const shard = path.dirname(file);
      if (!made.has(shard)) {
        mkdirSync(shard, { recursive: true });
        made.add(shard);
      }
      writeFileSync(file, body);
      if (id.startsWith('http.')) writeFileSync(file + '.json', JSON.stringify({ key: `GET /artifacts/run/${i}`, status: 200, headers: {}, size: body.length, storedAt: 0 }));
    }
    spawnSync('sync');
    const dropped = spawnSync('sh', ['-c', 'echo 3 > /proc/sys/vm/drop_caches']).status === 0;
    const store = new DiskStore(dir, 1e12, pino({ level: 'silent' }));
    const started = performance.now();
    await store.open();
    const seconds = (performance.now() - started) / 1000;
    if (store.count !== OBJECTS) throw new Error(`indexed ${store.count} of ${OBJECTS} objects`);
    const line = `- ${today()}: \`node --import tsx bench/cache-rebuild.ts\`: ${OBJECTS} objects indexed in **${seconds.toFixed(2)} s** (goal < 5 s), page cache ${dropped ? 'dropped first' : 'warm (not root: could not drop it)'}.\n`;
    process.stdout.write(line);
    if (process.argv.includes('--append')) await appendFile(new URL('./RESULTS.md', import.meta.url), `\n## cache index rebuild\n\n${line}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
