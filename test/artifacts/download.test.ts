// artifacts get (downloadArtifacts) and a DIR that already holds a symlink: every path is
// checked with lstat before anything is created, so nothing appears behind the link.
import t from 'tap';
import { existsSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { httpPut } from '../../src/client/http.js';
import { fetchArtifacts } from '../../src/artifacts/download.js';
import { indexUrl, INDEX_FORMAT } from '../../src/artifacts/names.js';
import { startOrigin } from '../helpers/origin.js';
import { flipped, startTamperingProxy } from '../helpers/tampering-proxy.js';
import { runCli } from '../helpers/cli.js';
import { uploadArtifacts } from '../../src/artifacts/upload.js';
import { EXIT } from '../../src/errors.js';

const digest = `sha256:${'0'.repeat(64)}`;

t.test('an existing symlink in DIR is refused before any directory is created', async (t) => {
  const dir = t.testdir({ outside: {} });
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const files = [{ path: 'sub/new/deep/f.txt', size: 1, digest }];
  await httpPut(indexUrl(origin.url, 'r', 'j'), JSON.stringify({ format: INDEX_FORMAT, run: 'r', job: 'j', files }), { token: origin.token });
  const outside = join(dir, 'outside');
  for (const [label, out, linkTo] of [['link out', join(dir, 'out'), outside], ['link inside', join(dir, 'out2'), join(dir, 'out2', 'j', 'real')]] as const) {
    mkdirSync(join(out, 'j', 'real'), { recursive: true });
    symlinkSync(linkTo, join(out, 'j', 'sub'));
    await t.rejects(fetchArtifacts({ from: origin.url, run: 'r', job: 'j', dest: out, token: origin.token }), { code: 'FC_ERR_BAD_NAME', message: /artifact path "sub\/new\/deep\/f.txt" is not written into .*: j\/sub is a symlink/ }, label);
    t.same(readdirSync(outside), [], `${label}: nothing created behind the link outside`);
    t.same(readdirSync(join(out, 'j', 'real')), [], `${label}: nothing created behind the link inside`);
  }
});

t.test('every path is checked before the first download', async (t) => {
  const dir = t.testdir({ outside: {} });
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const files = [{ path: 'ok.txt', size: 1, digest }, { path: 'sub/f.txt', size: 1, digest }];
  await httpPut(indexUrl(origin.url, 'r', 'j'), JSON.stringify({ format: INDEX_FORMAT, run: 'r', job: 'j', files }), { token: origin.token });
  const out = join(dir, 'out');
  mkdirSync(join(out, 'j'), { recursive: true });
  symlinkSync(join(dir, 'outside'), join(out, 'j', 'sub'));
  // ok.txt is not on the origin: reaching its download would fail with FC_ERR_NOT_FOUND
  await t.rejects(fetchArtifacts({ from: origin.url, run: 'r', job: 'j', dest: out, token: origin.token }), { code: 'FC_ERR_BAD_NAME', message: /j\/sub is a symlink/ });
  t.notOk(existsSync(join(out, 'j', 'ok.txt')), 'nothing downloaded');
});

t.test('an index refused names its URL without the credentials in it', async (t) => {
  const dir = t.testdir();
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const from = origin.url.replace('http://', 'http://alice:hunter2@');
  const shown = `${origin.url.replace('http://', 'http://***:***@')}/artifacts/r/`;
  // what a machine (with its run token) may upload as its job's index
  await httpPut(indexUrl(origin.url, 'r', 'not-json-index'), JSON.stringify({ format: 'other' }), { token: origin.token });
  await httpPut(indexUrl(origin.url, 'r', 'escaping'), JSON.stringify({ format: INDEX_FORMAT, run: 'r', job: 'escaping', files: [{ path: '../x', size: 1, digest }] }), { token: origin.token });
  await t.rejects(fetchArtifacts({ from, run: 'r', job: 'not-json-index', dest: join(dir, 'out') }), { code: 'FC_ERR_BAD_REQUEST', message: `${shown}not-json-index/_index.json: not an artifact index` });
  await t.rejects(fetchArtifacts({ from, run: 'r', job: 'escaping', dest: join(dir, 'out') }), { code: 'FC_ERR_BAD_NAME', message: `${shown}escaping/_index.json: artifact path "../x"` });
});

t.test('artifacts get through a cache that sends wrong bytes: the error names that request (method and URL), exit 5', async (t) => {
  const dir = t.testdir({ task: { 'log.txt': 'a log line\n' } });
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const [stored] = (await uploadArtifacts({ url: origin.url, token: origin.token, run: 'r', job: 'j', cwd: join(dir, 'task'), paths: ['log.txt'] })).files;
  let damage: (body: Buffer) => Buffer = flipped;
  const cache = await startTamperingProxy(t, origin.url, (path, body) => (path === '/artifacts/r/j/log.txt' ? damage(body) : body));
  const get = (out: string) => runCli(['artifacts', 'get', 'r/j', '--from', cache, '-o', join(dir, out)]);
  const flippedGet = await get('a');
  t.equal(flippedGet.code, EXIT.integrity, flippedGet.stderr);
  t.match(flippedGet.stderr, `GET ${cache}/artifacts/r/j/log.txt: digest mismatch: expected ${stored!.digest}, got sha256:`);
  damage = (body) => Buffer.concat([body, Buffer.from('x')]);
  const longer = await get('b');
  t.equal(longer.code, EXIT.integrity, longer.stderr);
  t.match(longer.stderr, `GET ${cache}/artifacts/r/j/log.txt: size mismatch: expected ${stored!.size} bytes, got ${stored!.size + 1}`);
  t.notOk(existsSync(join(dir, 'b', 'j', 'log.txt')), 'nothing kept');
});

t.test('artifacts get through a cache that sends far more bytes than the index states: refused as they come, not once they are all written', async (t) => {
  const dir = t.testdir({ task: { 'log.txt': 'a log line\n' } });
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const [stored] = (await uploadArtifacts({ url: origin.url, token: origin.token, run: 'r', job: 'j', cwd: join(dir, 'task'), paths: ['log.txt'] })).files;
  const extra = 8 * 2 ** 20;
  const cache = await startTamperingProxy(t, origin.url, (path, body) => (path === '/artifacts/r/j/log.txt' ? Buffer.concat([body, Buffer.alloc(extra)]) : body));
  const got = await runCli(['artifacts', 'get', 'r/j', '--from', cache, '-o', join(dir, 'out')]);
  t.equal(got.code, EXIT.integrity, got.stderr);
  const counted = new RegExp(`GET ${cache}/artifacts/r/j/log\\.txt: size mismatch: expected ${stored!.size} bytes, got (\\d+)`).exec(got.stderr);
  t.ok(counted, got.stderr);
  t.ok(Number(counted?.[1]) < extra, `stopped after ${counted?.[1]} bytes, not the ${stored!.size + extra} sent`);
  t.same(readdirSync(join(dir, 'out', 'j')), [], 'no partial file left');
});
