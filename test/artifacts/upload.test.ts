// Artifact uploads state each file's digest: bytes damaged on the way (here by a proxy that
// flips one) are refused by the origin before it stores the blob or publishes the name.
import t, { type Test } from 'tap';
import http from 'node:http';
import { join } from 'node:path';
import { request } from 'undici';
import { uploadArtifacts } from '../../src/artifacts/upload.js';
import { startOrigin } from '../helpers/origin.js';
import { serveOnLoopback } from '../helpers/loopback-server.js';

/** An HTTP proxy to `upstream` that flips the first byte of every PUT body. */
function damagingProxy(t: Test, upstream: string): Promise<string> {
  const server = http.createServer((req, res) => {
    const target = new URL(req.url ?? '/', upstream);
    const out = http.request(target, { method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    let first = true;
    req.on('data', (chunk: Buffer) => {
      if (first && req.method === 'PUT' && chunk.length > 0) {
        chunk = Buffer.from(chunk);
        chunk[0] = chunk[0]! ^ 0xff;
      }
      first = false;
      out.write(chunk);
    });
    req.on('end', () => out.end());
  });
  return serveOnLoopback(t, server);
}

t.test('a body damaged on the way is refused before the name exists', async (t) => {
  const dir = t.testdir({ task: { 'log.txt': 'a log line\n' } });
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  const proxy = await damagingProxy(t, origin.url);
  await t.rejects(uploadArtifacts({ url: proxy, token: origin.token, run: 'r1', job: 'j', cwd: join(dir, 'task'), paths: ['log.txt'] }), { code: 'FC_ERR_DIGEST_MISMATCH' });
  const name = await request(`${origin.url}/artifacts/r1/j/log.txt`);
  await name.body.dump();
  t.equal(name.statusCode, 404, 'nothing was published under the name');

  // undamaged, the same upload goes through
  const done = await uploadArtifacts({ url: origin.url, token: origin.token, run: 'r1', job: 'j', cwd: join(dir, 'task'), paths: ['log.txt'] });
  t.equal(done.files.length, 1);
  t.equal(await (await request(`${origin.url}/artifacts/r1/j/log.txt`)).body.text(), 'a log line\n');
});

t.test('a file named _index.json anywhere among the artifacts is refused before the first PUT: it would read as a job index', async (t) => {
  const dir = t.testdir({ task: { 'log.txt': 'a log line\n', out: { sub: { '_index.json': '{"not":"an index"}' } } } });
  const origin = await startOrigin(t, { dataDir: join(dir, 'origin') });
  await t.rejects(uploadArtifacts({ url: origin.url, token: origin.token, run: 'r1', job: 'j', cwd: join(dir, 'task'), paths: ['log.txt', 'out'] }), {
    code: 'FC_ERR_BAD_NAME',
    message: /artifact "out\/sub\/_index\.json": a file named _index\.json clashes with the job indexes/,
  });
  const name = await request(`${origin.url}/artifacts/r1/j/log.txt`);
  await name.body.dump();
  t.equal(name.statusCode, 404, 'nothing was uploaded');
});

t.test("a server that answers an upload with another digest than the one sent: the error names that request (method and URL)", async (t) => {
  const dir = t.testdir({ task: { 'log.txt': 'a log line\n' } });
  const other = `sha256:${'0'.repeat(64)}`;
  // a cache (or origin) that says it stored every upload under a digest not the one sent
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(req.method === 'PUT' ? 201 : 404, { 'content-type': 'application/json' }).end(JSON.stringify({ digest: other, size: 11 })));
  });
  const url = await serveOnLoopback(t, server);
  await t.rejects(uploadArtifacts({ url, run: 'r1', job: 'j', cwd: join(dir, 'task'), paths: ['log.txt'] }), {
    code: 'FC_ERR_DIGEST_MISMATCH',
    message: new RegExp(`^PUT ${url}/artifacts/r1/j/log\\.txt: digest mismatch: expected sha256:[0-9a-f]{64}, got ${other}$`),
  });
});
