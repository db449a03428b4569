// A name written on a full disk (a real tmpfs filled to its last page): the blob it names is
// stored already, its record cannot be written. Refused with 507; the name keeps its old
// record, served whole; no temp file is left; once room is made the same write goes through.
import t from 'tap';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { TEST_TOKEN } from '../helpers/origin.js';
import { fillDisk } from '../helpers/tmpfs.js';
import { NEEDS_ROOT, startOriginOnTmpfs } from '../helpers/tmpfs-origin.js';

const AUTH = { authorization: `Bearer ${TEST_TOKEN}` };

t.test('a name written again, or anew, on a full disk: 507, the old record served whole, no temp file; once room is made it is written', NEEDS_ROOT, async (t) => {
  const { dir, dataDir, url } = await startOriginOnTmpfs(t, '4m', 'names-full');
  const send = async (method: 'PUT' | 'GET', path: string, body?: Buffer): Promise<{ status: number; body: Buffer }> => {
    const res = await request(url + path, { method, headers: AUTH, ...(body ? { body } : {}) });
    return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()) };
  };
  const v1 = Buffer.from('version 1\n');
  const empty = Buffer.alloc(0);
  t.equal((await send('PUT', '/artifacts/r/job/out.txt', v1)).status, 201);
  // the empty blob stored: an empty body needs no room for its blob, only for its record
  t.equal((await send('PUT', '/artifacts/r/job/empty', empty)).status, 201);
  fillDisk(join(dir, 'filler'));

  for (const path of ['/artifacts/r/job/out.txt', '/artifacts/r/job/new.txt']) {
    const refused = await send('PUT', path, empty);
    t.equal(refused.status, 507, `${path}: refused for lack of room`);
    // said as the blob store says it (not the system's "ENOSPC: no space left on device, write")
    t.match(JSON.parse(refused.body.toString()), { code: 'FC_ERR_INSUFFICIENT_STORAGE', message: /^no room left on the data directory's device for the record of artifacts\/r\/job\/[a-z.]+ \(full, or over a quota or file size limit\)$/ });
  }
  t.same(await send('GET', '/artifacts/r/job/out.txt'), { status: 200, body: v1 }, 'the name written again keeps its old record, served whole');
  t.equal((await send('GET', '/artifacts/r/job/new.txt')).status, 404, 'the new name has none');
  t.same(readdirSync(join(dataDir, 'tmp')), [], 'no temp file left');

  rmSync(join(dir, 'filler'));
  const written = (await send('PUT', '/artifacts/r/job/out.txt', empty)).status;
  t.ok(written >= 200 && written < 300, `room made: written (HTTP ${written})`);
  t.same(await send('GET', '/artifacts/r/job/out.txt'), { status: 200, body: empty }, 'the new record is served');
});
