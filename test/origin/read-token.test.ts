// A read that needs a token (an asset uploaded internal, any read of an origin with readAccess:
// token) is answered as a write is: 401 with the Bearer challenge without a token, or with
// another scheme's credentials (tooltool's Hawk), 403 with a token not accepted (RFC 9110
// §15.5.2, §15.5.4). A cache in between passes the 401 on with its challenge.
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { startOrigin, TEST_TOKEN, type TestOrigin } from '../helpers/origin.js';
import { startCache } from '../cache/harness.js';

const HAWK = 'Hawk mac="bWFj", id="project/releng", ts="1700000000", nonce="abcdef"';

/** Status, WWW-Authenticate and code of a read of `url` with `authorization` (none when undefined). */
async function read(url: string, method: 'GET' | 'HEAD', authorization?: string): Promise<[number, unknown, unknown]> {
  const res = await request(url, { method, headers: authorization === undefined ? {} : { authorization } });
  const text = await res.body.text();
  return [res.statusCode, res.headers['www-authenticate'], res.statusCode >= 400 && text ? (JSON.parse(text) as { code?: string }).code : undefined];
}

async function upload(origin: TestOrigin, path: string, body: string, headers: Record<string, string> = {}): Promise<void> {
  const res = await request(`${origin.url}${path}`, { method: 'PUT', body, headers: { authorization: `Bearer ${TEST_TOKEN}`, ...headers } });
  await res.body.dump();
  if (res.statusCode >= 300) throw new Error(`PUT ${path}: HTTP ${res.statusCode}`);
}

/** Checks each read that needs a token at `base` (an origin, or a cache in front of it), by GET and HEAD. */
async function checkReads(t: Test, base: string, paths: readonly string[]): Promise<void> {
  for (const path of paths) {
    for (const method of ['GET', 'HEAD'] as const) {
      const what = `${method} ${path.slice(0, 24)}…`;
      t.same(await read(`${base}${path}`, method), [401, 'Bearer realm="fleetcache"', method === 'GET' ? 'FC_ERR_UNAUTHORIZED' : undefined], `${what} without a token: 401, with the scheme to use`);
      t.same((await read(`${base}${path}`, method, HAWK)).slice(0, 2), [401, 'Bearer realm="fleetcache"'], `${what} with Hawk credentials (another scheme): 401`);
      t.same(await read(`${base}${path}`, method, 'Bearer not-the-token'), [403, undefined, method === 'GET' ? 'FC_ERR_FORBIDDEN' : undefined], `${what} with a token not accepted: 403, no challenge`);
      t.equal((await read(`${base}${path}`, method, `Bearer ${TEST_TOKEN}`))[0], 200, `${what} with the token`);
    }
  }
}

const sha256 = (body: string) => createHash('sha256').update(body).digest('hex');

t.test('an internal asset, read without a token: 401 with the challenge, at the origin and through a cache', async (t) => {
  const dir = t.testdir({ origin: {}, cache: {} });
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const body = 'an internal toolchain\n';
  await upload(origin, `/cas/sha256/${sha256(body)}`, body, { 'x-fleetcache-visibility': 'internal' });
  await upload(origin, '/artifacts/r/j/tool.bin', body); // a name of it is read as it is
  const paths = [`/sha256/${sha256(body)}`, `/cas/sha256/${sha256(body)}`, '/artifacts/r/j/tool.bin'];
  await checkReads(t, origin.url, paths);
  const { url } = await startCache(t, { upstream: origin.url }, join(dir, 'cache'));
  await checkReads(t, url, paths);
});

t.test('readAccess: token: every read without a token is a 401 with the challenge, at the origin and through a cache', async (t) => {
  const dir = t.testdir({ origin: {}, cache: {} });
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin'), readAccess: 'token' });
  const body = 'a blob of a private fleet\n';
  await upload(origin, `/cas/sha256/${sha256(body)}`, body);
  await upload(origin, '/artifacts/r/j/log.txt', body);
  await upload(origin, '/projects/p/bases/b1', body);
  const paths = [`/cas/sha256/${sha256(body)}`, `/sha256/${sha256(body)}`, '/artifacts/r/j/log.txt', '/projects/p/bases/b1'];
  await checkReads(t, origin.url, paths);
  t.same(await read(`${origin.url}/projects/p/bases/`, 'GET'), [401, 'Bearer realm="fleetcache"', 'FC_ERR_UNAUTHORIZED'], 'the listing of bases');
  const { url } = await startCache(t, { upstream: origin.url }, join(dir, 'cache'));
  await checkReads(t, url, paths);
});
