// The behaviour every BlobStore implementation must have. Each implementation's test
// file calls storeTests with a factory for a fresh, opened store.
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Test } from 'tap';
import type { BlobStore } from '../../src/store/blob-store.js';
import type { Digest } from '../../src/store/digest.js';
import { DigestMismatchError, NotFoundError } from '../../src/errors.js';

type StoreFactory = (t: Test) => Promise<BlobStore>;

function digestOf(buf: Buffer, algo: 'sha256' | 'sha512' = 'sha256'): Digest {
  return { algo, hex: createHash(algo).update(buf).digest('hex') };
}

async function bytes(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/**
 * A put of a body that never ends, aborted `afterMs` into it (time for the store to have
 * begun its temporary file or key): it must reject as aborted. What it left, each store's
 * own test looks at.
 */
export async function putAbortedAfter(t: Test, store: BlobStore, afterMs: number): Promise<void> {
  const ac = new AbortController();
  const body = new Readable({ read() {} });
  body.push(randomBytes(10_000));
  const put = store.put(body, { signal: ac.signal });
  setTimeout(() => ac.abort(), afterMs);
  await t.rejects(put, { code: 'FC_ERR_ABORTED' });
}

export function storeTests(t: Test, factory: StoreFactory): void {
  t.test('put, stat, read back, ranges', async (t) => {
    const store = await factory(t);
    const data = randomBytes(300_000);
    const res = await store.put(Readable.from([data.subarray(0, 1000), data.subarray(1000)]));
    t.same(res.digest, digestOf(data));
    t.equal(res.size, data.length);
    t.equal(res.created, true);
    t.equal((await store.stat(res.digest)).size, data.length);
    t.ok(await store.has(res.digest));
    t.ok((await bytes(await store.createReadStream(res.digest))).equals(data));
    t.ok((await bytes(await store.createReadStream(res.digest, { start: 10, end: 19 }))).equals(data.subarray(10, 20)));
  });

  t.test('sha512 with an expected digest', async (t) => {
    const store = await factory(t);
    const data = Buffer.from('tooltool asset');
    const expected = digestOf(data, 'sha512');
    const res = await store.put(Readable.from([data]), { expected });
    t.same(res.digest, expected);
  });

  t.test('a mismatch is refused and nothing is stored', async (t) => {
    const store = await factory(t);
    const data = Buffer.from('the real content');
    const wrong = digestOf(Buffer.from('something else'));
    await t.rejects(store.put(Readable.from([data]), { expected: wrong }), DigestMismatchError);
    t.notOk(await store.has(wrong));
    t.notOk(await store.has(digestOf(data)));
    for await (const s of store.list()) t.fail(`unexpected object ${s.digest.hex}`);
  });

  t.test('size limit and expected size', async (t) => {
    const store = await factory(t);
    const data = randomBytes(10_000);
    await t.rejects(store.put(Readable.from([data]), { maxSize: 9_999 }), { code: 'FC_ERR_TOO_LARGE' });
    await t.rejects(store.put(Readable.from([data]), { expectedSize: 10_001 }), { code: 'FC_ERR_SIZE_MISMATCH' });
    t.notOk(await store.has(digestOf(data)));
  });

  t.test('a body that fails mid-stream leaves nothing', async (t) => {
    const store = await factory(t);
    async function* failing() {
      yield randomBytes(5000);
      throw new Error('client went away');
    }
    await t.rejects(store.put(Readable.from(failing())));
    for await (const s of store.list()) t.fail(`unexpected object ${s.digest.hex}`);
  });

  t.test('concurrent puts of one digest leave one object, which exactly one of them created', async (t) => {
    const store = await factory(t);
    const data = randomBytes(200_000);
    const results = await Promise.all(Array.from({ length: 8 }, () => store.put(Readable.from([data]))));
    t.ok(results.every((r) => r.digest.hex === digestOf(data).hex));
    t.equal(results.filter((r) => r.created).length, 1, 'the others say the object existed (an If-None-Match: * PUT is then a 412)');
    const listed: string[] = [];
    for await (const s of store.list()) listed.push(s.digest.hex);
    t.same(listed, [digestOf(data).hex]);
    t.ok((await bytes(await store.createReadStream(digestOf(data)))).equals(data));
  });

  t.test('missing objects are NotFoundError; delete', async (t) => {
    const store = await factory(t);
    const absent = digestOf(Buffer.from('absent'));
    await t.rejects(store.stat(absent), NotFoundError);
    await t.rejects(store.createReadStream(absent), NotFoundError);
    t.equal(await store.delete(absent), false);
    const res = await store.put(Readable.from([Buffer.from('x')]));
    t.equal(await store.delete(res.digest), true);
    t.notOk(await store.has(res.digest));
    await t.rejects(store.stat(res.digest), { code: 'FC_ERR_NOT_FOUND' });
  });

  t.test('list enumerates every object', async (t) => {
    const store = await factory(t);
    const want = new Set<string>();
    for (let i = 0; i < 20; i++) want.add((await store.put(Readable.from([Buffer.from(`object ${i}`)]))).digest.hex);
    const got = new Set<string>();
    for await (const s of store.list()) got.add(s.digest.hex);
    t.same([...got].sort(), [...want].sort());
  });
}
