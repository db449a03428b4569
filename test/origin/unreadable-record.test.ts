// A name record the origin cannot read (EACCES after a restore under another owner, EIO) is
// not a damaged one: a PUT of the name with no If-Match / If-None-Match fails (5xx) and
// changes nothing, rather than write over a record it never read. The origin runs as
// `nobody`: root reads a file whatever its mode.
import { createHash } from 'node:crypto';
import { chmod, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { nobody, tempDirNobodyReaches } from '../helpers/nobody.js';
import { TEST_TOKEN } from '../helpers/origin.js';
import { startServerProcess } from '../helpers/processes.js';
import { uploadRunManifestBase } from '../helpers/run-manifest.js';

async function put(url: string, body: string): Promise<{ status: number; code?: string }> {
  const res = await request(url, { method: 'PUT', body, headers: { authorization: `Bearer ${TEST_TOKEN}` } });
  const answer = (await res.body.json()) as { code?: string };
  return { status: res.statusCode, ...(answer.code ? { code: answer.code } : {}) };
}

const user = nobody();
t.test('a PUT over a record that cannot be read fails and changes nothing', { skip: typeof user === 'string' ? user : false }, async (t) => {
  if (typeof user === 'string') return;
  const dataDir = await tempDirNobodyReaches(t, 'fleetcache-unreadable-', true);
  // Without tap's hooks (NODE_OPTIONS), which write where this user may not.
  const origin = await startServerProcess(t, ['origin', '--listen', '127.0.0.1:0', '--data', dataDir], { FLEETCACHE_TOKEN: TEST_TOKEN, FLEETCACHE_LOG_LEVEL: 'warn', NODE_OPTIONS: '' }, user);
  const names = join(dataDir, 'names.v1');

  const manifest = await uploadRunManifestBase(origin.url, 'p', 'r1');
  t.equal((await put(`${origin.url}/projects/p/runs/r1`, JSON.stringify(manifest))).status, 201, 'a run manifest');
  t.equal((await put(`${origin.url}/artifacts/r/j/log`, 'the first log\n')).status, 201, 'an artifact');
  const records = [join(names, 'projects', 'p', 'runs', 'r1.rec.json'), join(names, 'artifacts', 'r', 'j', 'log.rec.json')];
  const before = await Promise.all(records.map((file) => readFile(file, 'utf8')));
  for (const file of records) await chmod(file, 0);

  const other = await uploadRunManifestBase(origin.url, 'p', 'r1', ' again');
  t.match(await put(`${origin.url}/projects/p/runs/r1`, JSON.stringify(other)), { status: 500, code: 'FC_ERR_INTERNAL' }, 'the run manifest is not written over');
  const second = 'the second log\n';
  t.match(await put(`${origin.url}/artifacts/r/j/log`, second), { status: 500, code: 'FC_ERR_INTERNAL' }, 'nor the artifact');
  const blob = await request(`${origin.url}/cas/sha256/${createHash('sha256').update(second).digest('hex')}`);
  await blob.body.dump();
  t.equal(blob.statusCode, 404, 'refused before its body was stored');

  for (const file of records) await chmod(file, 0o644);
  t.same(await Promise.all(records.map((file) => readFile(file, 'utf8'))), before, 'both records as they were');
  await origin.stop();
});
