// Run tokens (src/client/run-token.ts): what machines get instead of the write token. One
// reads what a token reads and uploads its own run's artifacts; every other write is
// refused (403), and so is a token forged, made for another run, or made from a write token
// rotated out.
import { createHash, createHmac } from 'node:crypto';
import t from 'tap';
import { request } from 'undici';
import { RUN_TOKEN_RENEW_MS, RUN_TOKEN_TTL_S, runToken, runTokenSource } from '../../src/client/run-token.js';
import { startOrigin, TEST_TOKEN } from '../helpers/origin.js';

t.test('a run token reads, and writes only its run\'s artifacts', async (t) => {
  const origin = await startOrigin(t, { tokens: [TEST_TOKEN, 'a-second-write-token-42'], readAccess: 'token' });
  const call = async (method: 'GET' | 'PUT' | 'POST', path: string, token: string | undefined, body?: string, headers: Record<string, string> = {}) => {
    const res = await request(`${origin.url}${path}`, { method, ...(body !== undefined ? { body } : {}), headers: { ...headers, ...(token ? { authorization: `Bearer ${token}` } : {}) } });
    const text = await res.body.text();
    return `${res.statusCode}${res.statusCode >= 400 ? ` ${(JSON.parse(text) as { code: string }).code}` : ''}`;
  };
  const mine = runToken(TEST_TOKEN, 'run-1');
  t.equal(await call('PUT', '/artifacts/run-1/job/log.txt', mine, 'a log'), '201', 'its run\'s artifacts');
  t.equal(await call('PUT', '/artifacts/run-1/sys:a/b/_index.json', runToken('a-second-write-token-42', 'run-1'), '{}'), '201', 'made from either write token');
  t.equal(await call('GET', '/artifacts/run-1/job/log.txt', mine), '200', 'reads (readAccess: token)');
  t.equal(await call('PUT', '/artifacts/run-2/job/log.txt', mine, 'x'), '403 FC_ERR_FORBIDDEN', 'another run\'s artifacts');
  const body = 'a blob';
  const hex = createHash('sha256').update(body).digest('hex');
  t.equal(await call('PUT', `/cas/sha256/${hex}`, mine, body), '403 FC_ERR_FORBIDDEN', 'a /cas upload');
  t.equal(await call('PUT', '/projects/p/bases/b1', mine, body), '403 FC_ERR_FORBIDDEN', 'a base');
  t.equal(await call('PUT', '/projects/p/runs/run-1', mine, '{}', { 'content-type': 'application/json' }), '403 FC_ERR_FORBIDDEN', 'a run manifest, even its own');
  t.equal(await call('POST', '/-/prune', mine), '403 FC_ERR_FORBIDDEN', 'a prune');
  t.equal(await call('PUT', `/cas/sha256/${hex}`, TEST_TOKEN, body), '201', 'the write token writes anything');
  t.equal(await call('GET', `/cas/sha256/${hex}`, mine), '200');

  const forged = `${mine.slice(0, -4)}AAAA`;
  const [prefix, , expires, mac] = mine.split('.');
  const otherRun = `${prefix}.${Buffer.from('run-2').toString('base64url')}.${expires}.${mac}`;
  const later = `${prefix}.${Buffer.from('run-1').toString('base64url')}.${Number(expires) + 86400}.${mac}`;
  // The first version, with no expiry: its MAC made as it was.
  const v1 = `fcrun1.${Buffer.from('run-1').toString('base64url')}.${createHmac('sha256', TEST_TOKEN).update('fleetcache run token\0run-1').digest('base64url')}`;
  for (const [what, token] of [['a forged MAC', forged], ['run-1\'s MAC on run-2', otherRun], ['its expiry pushed back', later], ['a write token rotated out', runToken('an-old-write-token-0000', 'run-1')],
    ['a cut one', mine.slice(0, 20)], ['the first version, which never expired', v1],
    // the same token spelled otherwise: base64url decoding would take each
    ['with padding', `${prefix}.${Buffer.from('run-1').toString('base64url')}=.${expires}.${mac}`], ['with a stray character', `${prefix}.${Buffer.from('run-1').toString('base64url')}!.${expires}.${mac}`],
    ['its expiry with a leading zero', `${prefix}.${Buffer.from('run-1').toString('base64url')}.0${expires}.${mac}`], ['its MAC with a stray character', `${mine}!`]] as const) {
    t.equal(await call('PUT', '/artifacts/run-1/job/x.txt', token, 'x'), '403 FC_ERR_FORBIDDEN', `write: ${what}`);
    t.equal(await call('GET', '/artifacts/run-1/job/log.txt', token), '403 FC_ERR_FORBIDDEN', `read: ${what}`);
  }
});

t.test('a run token expires: refused once past its time, and the answer says so', async (t) => {
  const origin = await startOrigin(t, { readAccess: 'token' });
  let n = 0;
  const put = async (token: string) => {
    const res = await request(`${origin.url}/artifacts/run-1/job/log-${++n}.txt`, { method: 'PUT', body: 'x', headers: { authorization: `Bearer ${token}` } });
    return { status: res.statusCode, body: await res.body.text() };
  };
  t.equal((await put(runToken(TEST_TOKEN, 'run-1', 60))).status, 201, 'a minute left: accepted');
  t.equal((await put(runToken(TEST_TOKEN, 'run-1', RUN_TOKEN_TTL_S, Date.now() - RUN_TOKEN_TTL_S * 1000 + 60_000))).status, 201, 'made almost a day ago: accepted');
  const expired = await put(runToken(TEST_TOKEN, 'run-1', RUN_TOKEN_TTL_S, Date.now() - RUN_TOKEN_TTL_S * 1000 - 1000));
  t.equal(expired.status, 403, 'made a day and a second ago: refused');
  t.match(JSON.parse(expired.body), { code: 'FC_ERR_FORBIDDEN', message: /run token has expired/ });
  const read = await request(`${origin.url}/artifacts/run-1/job/log-1.txt`, { headers: { authorization: `Bearer ${runToken(TEST_TOKEN, 'run-1', -1)}` } });
  await read.body.dump();
  t.equal(read.statusCode, 403, 'nor does it read');
});

t.test("the runner's tokens: one for an hour (the machines' requests for one object join one fill at a cache), then a new one", async (t) => {
  let now = 1_800_000_000_000;
  const next = runTokenSource(TEST_TOKEN, 'run-1', () => now);
  const first = next();
  now += 2000;
  t.equal(next(), first, 'two seconds later: the same');
  now += RUN_TOKEN_RENEW_MS - 2000 - 1;
  t.equal(next(), first, 'just under an hour later: the same');
  now += 1;
  const second = next();
  t.not(second, first, 'an hour later: a new one');
  t.equal(Number(second.split('.')[2]), now / 1000 + RUN_TOKEN_TTL_S, 'valid a day from then');
});
