// Blob bodies sent from local files through recycled buffers: exact bytes across buffer
// boundaries, and a client that goes away mid-body leaves no open file behind.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readdir, readlink } from 'node:fs/promises';
import { request } from 'undici';
import { startOrigin, uploadBlob } from '../helpers/origin.js';
import { eventually } from '../helpers/wait.js';

const SIZE = 5 * 1024 * 1024 + 123; // five whole 1 MiB buffers and a short tail

/** Files under the store that this process has open. */
async function openBlobFiles(dataDir: string): Promise<string[]> {
  const out: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target.startsWith(dataDir) && target.includes('cas.v1')) out.push(target);
  }
  return out;
}

t.test('whole bodies and ranges across buffer boundaries are exact', async (t) => {
  const origin = await startOrigin(t);
  const blob = randomBytes(SIZE);
  const hex = await uploadBlob(origin.url, blob, origin.token);
  const uploadAnswer = origin.context.ledger.snapshot().kinds.cas?.bytesOut ?? 0; // the JSON answer to the PUT

  const whole = await request(`${origin.url}/cas/sha256/${hex}`);
  t.equal(whole.statusCode, 200);
  t.equal(whole.headers['content-length'], String(SIZE));
  t.ok(Buffer.from(await whole.body.arrayBuffer()).equals(blob), 'whole body');

  let served = SIZE;
  for (const [start, end] of [[0, 0], [1024 * 1024 - 1, 1024 * 1024], [100, 3 * 1024 * 1024 + 4], [SIZE - 10, SIZE - 1]] as const) {
    const res = await request(`${origin.url}/cas/sha256/${hex}`, { headers: { range: `bytes=${start}-${end}` } });
    t.equal(res.statusCode, 206);
    t.equal(res.headers['content-range'], `bytes ${start}-${end}/${SIZE}`);
    t.ok(Buffer.from(await res.body.arrayBuffer()).equals(blob.subarray(start, end + 1)), `range ${start}-${end}`);
    served += end - start + 1;
  }
  t.equal(origin.context.ledger.snapshot().kinds.cas?.bytesOut, uploadAnswer + served, 'bytes out counted once each');
});

t.test('a client that leaves mid-body: the file is closed, the server keeps serving', async (t) => {
  const origin = await startOrigin(t);
  const blob = randomBytes(SIZE);
  const hex = await uploadBlob(origin.url, blob, origin.token);

  for (let i = 0; i < 3; i++) {
    const ac = new AbortController();
    const res = await request(`${origin.url}/cas/sha256/${hex}`, { signal: ac.signal });
    t.equal(res.statusCode, 200);
    // Take one chunk, then go away with the rest unread.
    for await (const _chunk of res.body) break;
    ac.abort();
  }
  await eventually('the blob files closed', async () => (await openBlobFiles(origin.dataDir)).length === 0, 5000).catch(() => undefined);
  t.same(await openBlobFiles(origin.dataDir), [], 'no blob file left open');

  const again = await request(`${origin.url}/cas/sha256/${hex}`);
  t.ok(Buffer.from(await again.body.arrayBuffer()).equals(blob), 'a later download is whole');
});
