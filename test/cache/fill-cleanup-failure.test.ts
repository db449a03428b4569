// A disk that fails while a fill cleans up after itself (its temp file cannot be removed:
// EIO, a filesystem turned read-only) is a storage failure, logged: the fill still ends
// (its end hook runs, its promise resolves) and the process does not die of a rejection
// nobody handles. The failing removal is the one thing staged here: the temp path handed to
// the fill is a non-empty directory, which rm refuses as a failing disk would.
import { mkdirSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { DiskStore } from '../../src/cache/disk-store.js';
import { Fill } from '../../src/cache/fill.js';
import { bodyServer, recordingLogger } from './harness.js';

interface Line { msg?: string; err?: string }

t.test('a temp file that cannot be removed ends the fill with a logged storage failure', async (t) => {
  const body = Buffer.alloc(256 * 1024, 7); // past SMALL_MAX: the fill writes a temp file
  const port = await bodyServer(t, body);
  const { log, lines } = recordingLogger<Line>();
  const dir = t.testdir();
  const store = new DiskStore(join(dir, 'data'), 64 * 1024 ** 2, log);
  await store.open();
  const unremovable = join(dir, 'unremovable');
  mkdirSync(unremovable);
  writeFileSync(join(unremovable, 'x'), 'x');
  const written = join(dir, 'written');
  store.createTemp = async () => ({ path: unremovable, fh: await open(written, 'w') });
  let ended = false;
  const fill = new Fill(store, log, {
    id: 'http.v1/00/test',
    request: () => request(`http://127.0.0.1:${port}/object`),
    decide: (res) => ({ status: res.statusCode, headers: {} }), // no meta: not kept, the temp file goes
  }, { ended: () => { ended = true; } });
  await fill.done; // rejected, before the fix: the process died of it
  t.ok(ended, 'the end hook ran');
  t.equal(store.failures, 1, 'counted as a storage failure');
  t.match(lines.find((l) => l.msg?.startsWith('cache storage failure')), { err: /EISDIR|directory/i });
});
