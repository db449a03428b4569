// Run tokens (src/client/run-token.ts): what machines get instead of the write token. One
// reads what a token reads and uploads its own run's artifacts; every other write is
// refused (403), and so is a token forged, made for another run, or made from a write token
// rotated out.
import { createHash, createHmac } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import t from 'tap';
import { request } from 'undici';
import { RUN_TOKEN_RENEW_MS, RUN_TOKEN_TTL_S, runToken, runTokenSource } from '../../src/client/run-token.js';
import { RunArtifactBudget } from '../../src/origin/run-budget.js';
import { NameStore } from '../../src/store/names.js';
import { startOrigin, TEST_TOKEN } from '../helpers/origin.js';
import { eventually } from '../helpers/wait.js';

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

t.test("a run's uploads with its token have a budget: bytes and files, kept across a restart, write tokens not counted", async (t) => {
  const dataDir = t.testdir();
  const runArtifacts = { maxBytes: 1000, maxFiles: 4 };
  let origin = await startOrigin(t, { dataDir, runArtifacts });
  const mine = runToken(TEST_TOKEN, 'run-1');
  let n = 0;
  const put = async (size: number, token = mine, extra: Record<string, string> = {}, run = 'run-1') => {
    const res = await request(`${origin.url}/artifacts/${run}/job/f-${++n}`, { method: 'PUT', body: Buffer.alloc(size, 'a'), headers: { authorization: `Bearer ${token}`, ...extra } });
    const text = await res.body.text();
    return res.statusCode >= 400 ? `${res.statusCode} ${(JSON.parse(text) as { code: string; message: string }).code}: ${(JSON.parse(text) as { message: string }).message}` : String(res.statusCode);
  };
  t.equal(await put(600), '201', '600 of 1000 bytes');
  t.match(await put(600), /^507 FC_ERR_QUOTA: run run-1 has uploaded 600 B of artifacts: 600 B more exceeds its budget of 1000 B \(limits\.maxRunArtifactsSize/, 'refused before its body is read');
  t.equal(await put(600, TEST_TOKEN), '201', 'a write token is not counted');
  t.equal(await put(600, runToken(TEST_TOKEN, 'run-2'), {}, 'run-2'), '201', 'another run has its own budget');
  t.match(await put(300, mine, { 'x-fleetcache-digest': `sha256:${'0'.repeat(64)}` }), /^400 FC_ERR_DIGEST_MISMATCH/, 'an upload refused for its bytes...');
  t.equal(await put(300), '201', '...gives back what it took');

  // Concurrent uploads each take their share first: of two that together exceed it, one is refused.
  const both = await Promise.all([put(100), put(100)]);
  t.same(both.map((a) => a.slice(0, 3)).sort(), ['201', '507']);

  // A body without a length cannot be weighed before it is read.
  const chunked = await request(`${origin.url}/artifacts/run-1/job/chunked`, { method: 'PUT', body: Readable.from([Buffer.from('x')]), headers: { authorization: `Bearer ${mine}` } });
  t.equal(chunked.statusCode, 411);
  t.match(JSON.parse(await chunked.body.text()), { code: 'FC_ERR_LENGTH_REQUIRED', message: /must state its Content-Length/ });

  // After a restart the run's stored artifacts count, the write token's too: 1,600 bytes in 4 files.
  await origin.app.close();
  origin = await startOrigin(t, { dataDir, runArtifacts: { maxBytes: 2000, maxFiles: 5 } });
  t.match(await put(401), /^507 .*has uploaded 1.6 KiB of artifacts/, 'counted from disk at its first upload');
  t.equal(await put(400), '201', 'what is left of the budget');
  t.match(await put(0), /^507 FC_ERR_QUOTA: run run-1 has used its budget of 5 artifact files \(limits\.maxRunArtifactsFiles/, 'the sixth file');
});

t.test('a run-token upload refused once stored (412: another PUT named it meanwhile) stays counted: its blob stays on disk', async (t) => {
  const origin = await startOrigin(t, { runArtifacts: { maxBytes: 1000, maxFiles: 100 } });
  const mine = runToken(TEST_TOKEN, 'run-1');
  const url = `${origin.url}/artifacts/run-1/job/log.txt`;
  const auth = { authorization: `Bearer ${mine}` };
  // A conditional upload whose body is held half-way...
  const body = new PassThrough();
  const held = request(url, { method: 'PUT', body, headers: { ...auth, 'if-none-match': '*', 'content-length': '600' } });
  body.write(Buffer.alloc(300, 'a'));
  await eventually('the first half is read', async () => (await readdir(join(origin.dataDir, 'tmp')).catch(() => [])).length > 0);
  // ...while another names the file; then the first ends, stored, and refused.
  const other = await request(url, { method: 'PUT', body: '', headers: auth });
  await other.body.dump();
  t.equal(other.statusCode, 201);
  body.end(Buffer.alloc(300, 'b'));
  const refused = await held;
  await refused.body.dump();
  t.equal(refused.statusCode, 412);
  const next = await request(`${origin.url}/artifacts/run-1/job/more.txt`, { method: 'PUT', body: Buffer.alloc(600), headers: auth });
  t.equal(next.statusCode, 507, 'the 600 stored bytes count: 600 more would pass 1000');
  t.match(JSON.parse(await next.body.text()), { code: 'FC_ERR_QUOTA', message: /has uploaded 600 B of artifacts/ });
});

t.test('runs past the kept number are forgotten (counted from disk again), never one with an upload in flight', async (t) => {
  const names = new NameStore(t.testdir());
  await names.open();
  const budget = new RunArtifactBudget(names, { maxBytes: 1000, maxFiles: 100 }, 3);
  const inFlight = await budget.reserve('run-a', 900);
  for (const run of ['run-b', 'run-c', 'run-d', 'run-e']) (await budget.reserve(run, 1))(true);
  await t.rejects(budget.reserve('run-a', 900), { code: 'FC_ERR_QUOTA' }, "run-a's upload in flight still counts");
  inFlight(false);
  (await budget.reserve('run-a', 900))(true);
  // run-b was forgotten: counted again from disk, where it stored nothing (its 1 byte was not written here)
  (await budget.reserve('run-b', 1000))(true);
  t.pass('a forgotten run is counted again');
});
