// The local base cache of push: a cached base is only used when it still hashes to what it
// was, and several pushes may share one cache at the same time.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { packToFile } from '../../src/pack/packer.js';
import { pullProject } from '../../src/project-upload/pull.js';
import { baseCachePath, pushProject } from '../../src/project-upload/push.js';
import { startOrigin, TEST_TOKEN } from '../helpers/origin.js';
import { describeTree } from '../helpers/tree.js';

async function setup(t: Test) {
  const dir = t.testdir();
  const { url } = await startOrigin(t, { dataDir: join(dir, 'origin-data') });
  const project = join(dir, 'project');
  mkdirSync(join(project, 'src'), { recursive: true });
  for (let i = 0; i < 20; i++) writeFileSync(join(project, 'src', `m${i}.txt`), Array.from({ length: 500 }, (_, j) => `line ${i} ${j} ${(i * j) % 13}\n`).join(''));
  writeFileSync(join(project, 'blob.bin'), randomBytes(256 << 10));
  const baseCache = join(dir, 'bases');
  return { dir, url, project, baseCache, common: { dir: project, project: 'p', origin: url, token: TEST_TOKEN, baseCache } };
}

t.test('a damaged cached base is fetched again, not used', async (t) => {
  const { dir, url, project, baseCache, common } = await setup(t);
  const first = await pushProject({ ...common, run: 'r1' });
  const cached = baseCachePath(baseCache, first.manifest.base.digest);
  // the cached file ends up with other bytes (here those of the next run: a delta against
  // them is nearly empty, and useless against the real base)
  writeFileSync(join(project, 'src', 'm3.txt'), 'changed\n');
  await packToFile(project, cached);
  const second = await pushProject({ ...common, run: 'r2' });
  t.ok(second.manifest.delta, 'still a delta');
  t.equal(second.bytesReceived, first.manifest.base.size, 'the base was fetched again');
  const out = join(dir, 'out');
  await pullProject({ project: 'p', run: 'r2', from: url, dir: out });
  t.same(describeTree(out), describeTree(project), 'the run rebuilds');

  // the repaired copy is trusted again
  writeFileSync(join(project, 'src', 'm4.txt'), 'changed too\n');
  const third = await pushProject({ ...common, run: 'r3' });
  t.equal(third.bytesReceived, 0);
});

t.test('a cached base without a recorded digest (older cache, crash) is fetched again', async (t) => {
  const { baseCache, project, common } = await setup(t);
  const first = await pushProject({ ...common, run: 'r1' });
  const cached = baseCachePath(baseCache, first.manifest.base.digest);
  writeFileSync(`${cached}.sha256`, 'garbage\n');
  writeFileSync(join(project, 'src', 'm3.txt'), 'changed\n');
  const second = await pushProject({ ...common, run: 'r2' });
  t.equal(second.bytesReceived, first.manifest.base.size);
  t.same(readdirSync(baseCache).sort(), [`${cached.split('/').pop()}`, `${cached.split('/').pop()}.sha256`], 'no temporary files left');
});

t.test('pushes sharing one base cache fetch the same base at the same time', async (t) => {
  const { dir, url, project, common } = await setup(t);
  writeFileSync(join(project, 'big.bin'), randomBytes(4 << 20));
  await pushProject({ ...common, run: 'r0' });
  writeFileSync(join(project, 'src', 'm3.txt'), 'changed\n');
  const shared = join(dir, 'shared-cache');
  const pushes = await Promise.all(['a', 'b', 'c'].map((run) => pushProject({ ...common, run, baseCache: shared })));
  for (const p of pushes) t.ok(p.manifest.delta, `${p.run}: a delta`);
  t.same(readdirSync(shared).filter((name) => name.includes('partial')), [], 'no temporary files left');
  const out = join(dir, 'out-c');
  await pullProject({ project: 'p', run: 'c', from: url, dir: out });
  t.same(describeTree(out), describeTree(project));
});
