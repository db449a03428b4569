// A name whose record on disk is damaged (cut short by a crash of an older version, edited by
// hand): the server's fault, never the client's. An upload of the name replaces it (not a
// 400, not a 500), says so in the log with the name, and the blob the record named is freed
// by the next prune when its text still names it whole; text that names none leaves it.
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { RECENT_MS } from '../../src/origin/references.js';
import { Retention } from '../../src/origin/retention.js';
import { startOrigin, TEST_TOKEN } from '../helpers/origin.js';
import { startServerProcess } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';

const sha = (text: string) => createHash('sha256').update(text).digest('hex');

async function put(url: string, body: string): Promise<string> {
  const res = await request(url, { method: 'PUT', body, headers: { authorization: `Bearer ${TEST_TOKEN}` } });
  const answer = (await res.body.json()) as { code?: string };
  return `${res.statusCode}${answer.code ? ` ${answer.code}` : ''}`;
}

async function get(url: string): Promise<{ status: number; text: string }> {
  const res = await request(url);
  return { status: res.statusCode, text: await res.body.text() };
}

/**
 * Three artifacts r/j/<name> (ASCII names: the record's file is the name), each uploaded once
 * and its record then damaged: `cut` short after its digest field, `edited` with a digest
 * that is none, `stub` cut before its digest field.
 */
const DAMAGED = {
  cut: (first: string) => `{"digest":"sha256:${sha(first)}","size":${first.length},"crea`,
  edited: (first: string) => `{"digest":"sha256:edited-by-hand","size":${first.length},"created":1}`,
  stub: () => '{"dig',
};

async function uploadAndDamage(url: string, dataDir: string, t: Test): Promise<Record<keyof typeof DAMAGED, string>> {
  const firsts = {} as Record<keyof typeof DAMAGED, string>;
  for (const [name, damage] of Object.entries(DAMAGED) as Array<[keyof typeof DAMAGED, (first: string) => string]>) {
    const first = `the first upload of ${name}\n`;
    t.equal(await put(`${url}/artifacts/r/j/${name}`, first), '201', `${name}: uploaded`);
    writeFileSync(join(dataDir, 'names.v1', 'artifacts', 'r', 'j', `${name}.rec.json`), damage(first));
    firsts[name] = first;
  }
  return firsts;
}

t.test('an upload replaces a damaged record; the blob it named goes with the next prune when its text still names it', async (t) => {
  const origin = await startOrigin(t);
  const firsts = await uploadAndDamage(origin.url, origin.dataDir, t);
  for (const name of Object.keys(DAMAGED)) {
    const url = `${origin.url}/artifacts/r/j/${name}`;
    const damaged = await request(url);
    t.same([damaged.statusCode, ((await damaged.body.json()) as { code: string }).code], [500, 'FC_ERR_INTERNAL'], `${name}: a GET is the server's error`);
    t.equal(await put(url, `the second upload of ${name}\n`), '200', `${name}: the upload replaces it`);
    t.same(await get(url), { status: 200, text: `the second upload of ${name}\n` }, `${name}: the name names the new upload`);
  }
  const retention = new Retention(origin.context, { maxAgeMs: 30 * 86_400_000, keepBases: 3 });
  t.match(await retention.prune({ now: Date.now() + RECENT_MS + 60_000 }), { blobs: 1, bytes: firsts.cut.length, failed: 0 }, 'one blob freed');
  t.equal((await get(`${origin.url}/cas/sha256/${sha(firsts.cut)}`)).status, 404, 'the blob the cut record still named');
  for (const name of ['edited', 'stub'] as const) t.equal((await get(`${origin.url}/cas/sha256/${sha(firsts[name])}`)).status, 200, `${name}: its blob is not known, so stays`);
  for (const name of Object.keys(DAMAGED)) t.equal((await get(`${origin.url}/artifacts/r/j/${name}`)).status, 200, `${name}: the name stays`);
});

t.test('the upload that replaces a damaged record says so in the log, with the name and what becomes of its blob', async (t) => {
  const dataDir = t.testdir();
  const origin = await startServerProcess(t, ['origin', '--listen', '127.0.0.1:0', '--data', dataDir], { FLEETCACHE_TOKEN: TEST_TOKEN, FLEETCACHE_LOG_LEVEL: 'warn' });
  const firsts = await uploadAndDamage(origin.url, dataDir, t);
  for (const name of Object.keys(DAMAGED)) t.equal(await put(`${origin.url}/artifacts/r/j/${name}`, `again ${name}`), '200', `${name}: replaced`);
  const said = (name: string) => origin.stderr().split('\n').filter((l) => l.includes(`"name":"artifacts/r/j/${name}"`)).map((l) => JSON.parse(l) as { level: number; msg: string; digest?: string });
  await eventually('a line for each damaged record', () => Object.keys(DAMAGED).every((name) => said(name).length > 0));
  t.match(said('cut'), [{ level: 40, digest: `sha256:${sha(firsts.cut)}`, msg: /is damaged \(Unterminated string in JSON[^)]*\); this upload replaces it\. The blob it named, sha256:\w+ \(read from its text\), is freed by the next prune/ }]);
  t.match(said('edited'), [{ level: 40, msg: /is damaged \(not a name record[^)]*\)\); this upload replaces it\. It names no blob that can be read: the blob it pointed at, if still stored, is freed by no prune/ }]);
  t.match(said('stub'), [{ level: 40, msg: /names\.v1\/artifacts\/r\/j\/stub\.rec\.json, is damaged .* freed by no prune/ }]);
  for (const name of Object.keys(DAMAGED)) t.equal(said(name).length, 1, `${name}: said once`);
  await origin.stop();
});
