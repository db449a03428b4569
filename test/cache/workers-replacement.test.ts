// `fleetcache cache --workers 2`: a worker replacing an http entry (a mirror object or a
// name fetched anew) renames its sidecar, then its body (DiskStore.commit). Another worker
// that looks the entry up between the two renames finds a sidecar naming another body than
// the one in place: not damage for it to remove (as a crash's would be), but a replacement
// it must leave to land.
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { httpId } from '../../src/cache/disk-store.js';
import { startServerProcess } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { fetchHash } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

// One cache of two workers for both subtests, each on an object of its own (a cache start
// is three processes). A replacement of another size too: its sidecar's size then differs
// from the old body's as well.
t.test('two workers, one mirror', async (t) => {
  const { up, upUrl } = await startUpstream(t);
  const dir = t.testdir();
  const data = path.join(dir, 'data');
  writeFileSync(path.join(dir, 'cache.yaml'), `upstream: ${upUrl}\nmirrors:\n  m:\n    url: ${upUrl}/mir/\n`);
  const cache = await startServerProcess(t, ['cache', '--config', path.join(dir, 'cache.yaml'), '--listen', '127.0.0.1:0', '--data', data, '--workers', '2'], { FLEETCACHE_LOG_LEVEL: 'warn' });

  for (const [name, what, next] of [['f', 'the same size', 'version 2'], ['g', 'another size', 'version 2, longer']] as const) await t.test(`two workers: an entry looked up between the two renames of another worker's replacement (${what}) keeps the replacement's files`, async (t) => {
    const body = Buffer.from('version 1');
    up.objects.set(`/mir/${name}`, { body, headers: { etag: '"v1"', 'cache-control': 'max-age=600' } });
    const url = `${cache.url}/mirror/m/${name}`;
    const file = path.join(data, httpId(`mirror:m:/${name}`));
    t.equal((await fetchHash(url)).xcache, 'MISS');
    await eventually('stored', () => existsSync(file) && existsSync(`${file}.json`), 5000);
    // From now on upstream's answers are not kept: only the files put in place below can serve.
    up.objects.set(`/mir/${name}`, { body, headers: { etag: '"v1"', 'cache-control': 'no-store' } });

    // Another worker's replacement between its two renames: the new body still in tmp/, its
    // sidecar, naming that body's inode, renamed into place beside the old body.
    const replacement = path.join(data, 'tmp', `replacement-${name}`);
    writeFileSync(replacement, next);
    const sidecar = JSON.parse(readFileSync(`${file}.json`, 'utf8')) as Record<string, unknown>;
    writeFileSync(`${replacement}.json`, JSON.stringify({ ...sidecar, size: next.length, ino: statSync(replacement).ino }));
    renameSync(`${replacement}.json`, `${file}.json`);
    // Fresh connections until one reaches the worker that did not store the entry, and knows
    // nothing of it but the files: it cannot serve the pair, and asks upstream.
    const asked = up.count(`/mir/${name}`);
    for (let i = 0; i < 20 && up.count(`/mir/${name}`) === asked; i++) t.equal((await fetchHash(url, {}, { fresh: true })).status, 200);
    t.equal(up.count(`/mir/${name}`), asked + 1, 'the other worker found the sidecar naming another body, and did not serve it');

    renameSync(replacement, file); // the replacement's second rename
    t.ok(existsSync(`${file}.json`), "the replacement's sidecar is still there");
    t.equal((JSON.parse(readFileSync(`${file}.json`, 'utf8')) as { ino?: number }).ino, statSync(file).ino, 'and names the body in place');
    // (the worker that stored the first version keeps it in memory: a real replacement's commit
    // has the primary tell it, this one made by hand does not)
    await eventually('the other worker serves the replacement', async () => {
      const answers = await Promise.all(Array.from({ length: 4 }, () => fetchHash(url, {}, { fresh: true })));
      return answers.some((a) => a.xcache === 'HIT' && a.size === next.length);
    }, 5000);
    t.notMatch(cache.stderr(), /dropping unreadable cache entry/, 'nothing taken for damage');
  });
});
