// A named upload that stored its blob and then could not name it (a 412 once another PUT
// changed the name during the upload, a 507 for the name's record on a full disk): no name
// ever points at that blob, and the next prune frees it (context.ts replacedRecord).
import t from 'tap';
import { createHash } from 'node:crypto';
import { ftruncateSync, openSync, closeSync, fstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { RECENT_MS } from '../../src/origin/references.js';
import { Retention } from '../../src/origin/retention.js';
import { replacedRecord } from '../../src/origin/context.js';
import { startOrigin, TEST_TOKEN } from '../helpers/origin.js';
import { fillDisk } from '../helpers/tmpfs.js';
import { NEEDS_ROOT, startOriginOnTmpfs } from '../helpers/tmpfs-origin.js';
import { eventually } from '../helpers/wait.js';

const DAY = 86_400_000;
const AUTH = { authorization: `Bearer ${TEST_TOKEN}` };
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** A prune's reference time once the uploads of the test are no longer recent (references.ts). */
const afterUploads = () => Date.now() + RECENT_MS + 60_000;

async function put(url: string, body: Buffer | Readable, headers: Record<string, string> = {}): Promise<{ status: number; etag: string | undefined }> {
  const res = await request(url, { method: 'PUT', headers: { ...AUTH, ...headers }, body });
  await res.body.dump();
  return { status: res.statusCode, etag: res.headers.etag as string | undefined };
}

async function status(url: string): Promise<number> {
  const res = await request(url, { headers: AUTH });
  await res.body.dump();
  return res.statusCode;
}

t.test('a conditional PUT that loses the race once its blob is stored (412): the next prune frees that blob; bytes stored already are left alone', async (t) => {
  const origin = await startOrigin(t);
  const name = `${origin.url}/projects/demo/bases/b1`;
  const first = Buffer.from('base 1\n');
  const { etag } = await put(name, first);
  const asset = Buffer.alloc(64 * 1024, 'asset');
  t.equal((await put(`${origin.url}/cas/sha256/${sha(asset)}`, asset)).status, 201);

  /** A PUT of `body` under If-Match of the first base, held after its first half until `go`. */
  const held = (body: Buffer) => {
    let go!: () => void;
    const released = new Promise<void>((resolve) => (go = resolve));
    async function* chunks() {
      yield body.subarray(0, body.length / 2);
      await released;
      yield body.subarray(body.length / 2);
    }
    const answer = put(name, Readable.from(chunks()), { 'if-match': etag!, 'content-length': String(body.length) });
    return { answer, go };
  };
  for (const [loser, storedAlready] of [[Buffer.alloc(64 * 1024, 'loser'), false], [asset, true]] as const) {
    const upload = held(loser);
    // its conditions passed and its body is being stored when the other PUT changes the name
    await eventually('the held upload is being stored', () => readdirSync(join(origin.dataDir, 'tmp')).length > 0);
    const winner = await put(name, Buffer.from(`base ${sha(loser)}\n`), { 'if-match': etag! });
    t.equal(winner.status, 200);
    upload.go();
    t.equal((await upload.answer).status, 412, 'the upload that lost: its re-check fails');
    const recorded = await origin.context.names.find(replacedRecord(`sha256:${sha(loser)}`));
    if (storedAlready) t.equal(recorded, undefined, 'bytes stored before it are not recorded as its to free');
    else t.match(recorded, { size: loser.length }, 'its blob, stored anew, is recorded as named by nothing');
    // the first base again, for the next round's If-Match
    t.equal((await put(name, first)).status, 200);
  }
  const loserUrl = `${origin.url}/cas/sha256/${sha(Buffer.alloc(64 * 1024, 'loser'))}`;
  t.equal(await status(loserUrl), 200, 'the lost upload\'s blob is on disk until a prune');
  const retention = new Retention(origin.context, { maxAgeMs: 30 * DAY, keepBases: 3 });
  await retention.prune({ now: afterUploads() });
  t.equal(await status(loserUrl), 404, 'the prune freed the blob nothing names');
  t.equal(await status(`${origin.url}/cas/sha256/${sha(asset)}`), 200, 'the asset uploaded before stays');
  t.equal(await status(name), 200, 'the name stays');
});

t.test('a name whose record a full disk refuses (507) once its blob is stored: the next prune frees that blob', NEEDS_ROOT, async (t) => {
  const { url, context, dir } = await startOriginOnTmpfs(t, '4m', 'unnamed-blob');
  const page = 4096;
  const blob = Buffer.alloc(page, 'orphan');
  // A Content-Disposition of more than a page: the name's record takes two pages, the record
  // of the blob named by nothing one.
  const disposition = `attachment; filename="${'x'.repeat(page + 100)}"`;
  // Room for the blob and one page more: the name's record does not fit, the other record does.
  const filler = join(dir, 'filler');
  fillDisk(filler);
  const fd = openSync(filler, 'r+');
  ftruncateSync(fd, fstatSync(fd).size - 2 * page);
  closeSync(fd);

  const refused = await put(`${url}/artifacts/r/job/out.bin`, blob, { 'content-disposition': disposition });
  t.equal(refused.status, 507, 'no room for the name\'s record');
  t.equal(await status(`${url}/artifacts/r/job/out.bin`), 404, 'the name has no record');
  const blobUrl = `${url}/cas/sha256/${sha(blob)}`;
  t.equal(await status(blobUrl), 200, 'its blob is stored');
  t.match(await context.names.find(replacedRecord(`sha256:${sha(blob)}`)), { size: blob.length }, 'recorded as named by nothing');
  const retention = new Retention(context, { maxAgeMs: 30 * DAY, keepBases: 3 });
  t.match(await retention.prune({ now: afterUploads() }), { blobs: 1, failed: 0 });
  t.equal(await status(blobUrl), 404, 'the prune freed it');
});
