// The embedded caches' directories under the data root: `region-<name>` with the prefix once,
// the copies kept under the old doubled name (`region-region-a`, the demo's) moved there.
import t from 'tap';
import { existsSync } from 'node:fs';
import { readdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { startEmbeddedFleet } from '../../src/run/embedded.js';

async function started(dataRoot: string, regions: string[]): Promise<string[]> {
  const fleet = await startEmbeddedFleet(dataRoot, regions, 'silent');
  await fleet.close();
  return (await readdir(dataRoot)).filter((name) => name.startsWith('region-')).sort();
}

t.test("a region named region-a keeps its cache in region-a, not region-region-a; one named b in region-b", async (t) => {
  const dataRoot = t.testdir();
  t.same(await started(dataRoot, ['region-a', 'b']), ['region-a', 'region-b']);
});

t.test('the copies an earlier run kept in region-region-a are moved to region-a, where the cache finds them', async (t) => {
  const dataRoot = t.testdir();
  await started(dataRoot, ['region-a']);
  const kept = (await readdir(join(dataRoot, 'region-a'))).sort();
  t.ok(kept.length > 0, 'the cache laid out its directory');
  await rename(join(dataRoot, 'region-a'), join(dataRoot, 'region-region-a')); // as an earlier version left it
  t.same(await started(dataRoot, ['region-a']), ['region-a']);
  t.same((await readdir(join(dataRoot, 'region-a'))).sort(), kept, 'the old directory, moved');
  t.notOk(existsSync(join(dataRoot, 'region-region-a')));
});

t.test('regions a and region-a, which would share region-a, each keep a directory of their own', async (t) => {
  const dataRoot = t.testdir();
  t.same(await started(dataRoot, ['a', 'region-a']), ['region-a', 'region-region-a']);
});
