// Names whose segments fit the byte limit but whose file names on disk would not (each
// byte can become "%XX", and a record file has a suffix) are refused as too long, and an
// unexpected failure never shows the client where the server keeps its files.
import t from 'tap';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { startOrigin, type TestOrigin } from '../helpers/origin.js';

async function put(origin: TestOrigin, path: string, body = 'x') {
  const res = await request(`${origin.url}${path}`, { method: 'PUT', headers: { authorization: `Bearer ${origin.token}` }, body });
  const text = await res.body.text();
  return { status: res.statusCode, text, json: () => JSON.parse(text) as { code: string; message: string } };
}

t.test('a segment too long once percent-encoded is a 400 FC_ERR_BAD_NAME, not a 500', async (t) => {
  const origin = await startOrigin(t);
  const tooLong = [' '.repeat(100), '☃'.repeat(66), ' '.repeat(83)];
  for (const segment of tooLong) {
    const name = encodeURIComponent(segment);
    for (const path of [`/artifacts/r/j/${name}`, `/artifacts/r/${name}/x`, `/projects/p/bases/${name}`, `/projects/${name}/runs/r`]) {
      const res = await put(origin, path, '{}');
      t.equal(res.status, 400, `${path.slice(0, 40)}…`);
      t.equal(res.json().code, 'FC_ERR_BAD_NAME');
      t.match(res.json().message, /too long/);
      t.notMatch(res.text, origin.dataDir);
    }
  }
  // 82 spaces are 246 bytes encoded, 255 with ".rec.json": the longest that fits.
  const longest = `/artifacts/r/j/${encodeURIComponent(' '.repeat(82))}`;
  t.equal((await put(origin, longest, 'fits')).status, 201);
  const get = await request(`${origin.url}${longest}`);
  t.equal(await get.body.text(), 'fits');
});

t.test('a path segment past the router\'s limit: FC_ERR_BAD_NAME, without the URL echoed back', async (t) => {
  const origin = await startOrigin(t);
  const res = await put(origin, `/projects/${'a'.repeat(1100)}/bases/x`);
  t.equal(res.status, 400);
  t.equal(res.json().code, 'FC_ERR_BAD_NAME');
  t.match(res.json().message, /too long/);
  t.notMatch(res.text, 'aaaaaaaaaaaaaaaaaaaa', 'the URL is not echoed');
});

t.test('an unexpected failure answers 500 without its message (server paths)', async (t) => {
  const origin = await startOrigin(t);
  // A file where the store wants a directory: mkdir fails with the absolute path in its message.
  await mkdir(join(origin.dataDir, 'names.v1', 'artifacts'), { recursive: true });
  await writeFile(join(origin.dataDir, 'names.v1', 'artifacts', 'r'), 'in the way');
  const res = await put(origin, '/artifacts/r/j/x');
  t.equal(res.status, 500);
  t.equal(res.json().code, 'FC_ERR_INTERNAL');
  t.notMatch(res.text, origin.dataDir);
  t.notMatch(res.text, /names\.v1|EEXIST|ENOTDIR/);
  t.match(res.json().message, /internal error \(request \S+\)/);
});

t.test('a name with a C1 or bidirectional control is refused (it would read otherwise than it is)', async (t) => {
  const origin = await startOrigin(t);
  for (const bad of ['report\u202Etxt.exe', 'a\u2066b', 'a\u200Fb', 'a\u0085b', 'a\u009Bb']) {
    const res = await put(origin, `/artifacts/r/j/${encodeURIComponent(bad)}`);
    t.equal(res.status, 400, JSON.stringify(bad));
    t.equal(res.json().code, 'FC_ERR_BAD_NAME');
    t.match(res.json().message, /control character refused/);
  }
  t.equal((await put(origin, `/artifacts/r/j/${encodeURIComponent('Ünïcødé ☃ שלום')}`)).status, 201, 'other non-ASCII is a name');
});
