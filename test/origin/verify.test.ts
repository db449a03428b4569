// `fleetcache verify`: every blob of an origin's store hashed again; a damaged one is listed
// (exit 5) and, with --remove, deleted so that its next upload stores it again. Reading runs
// beside a live origin; --remove does not (the data directory is the origin's). The origins
// and verify run in the test's process: the data directory's lock refuses a second holder
// there as it does another process (test/store/dir-lock.test.ts).
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import t from 'tap';
import { EXIT } from '../../src/errors.js';
import { runCli } from '../helpers/cli.js';
import { startOrigin, uploadBlob } from '../helpers/origin.js';
import { startS3rver, s3StorageYaml, S3RVER_CREDENTIALS } from '../helpers/s3rver.js';
import { S3BlobStore } from '../../src/store/s3.js';
import { serveOnLoopback } from '../helpers/loopback-server.js';
import { rotInPlace } from '../helpers/bit-rot.js';

// One S3 server for the file's two tests on S3 (a start is a node process and s3rver's
// modules): each keeps to a key prefix of its own.
const s3 = await startS3rver(t);
// the credentials their origin.yaml names (s3StorageYaml)
process.env.TEST_S3_KEY = S3RVER_CREDENTIALS.accessKeyId;
process.env.TEST_S3_SECRET = S3RVER_CREDENTIALS.secretAccessKey;
t.teardown(() => { delete process.env.TEST_S3_KEY; delete process.env.TEST_S3_SECRET; });

t.test('a damaged blob is found beside a live origin, removed once it is stopped, then uploaded again', async (t) => {
  const data = join(t.testdir(), 'data');
  const origin = await startOrigin(t, { dataDir: data });
  const bodies = [randomBytes(3 * 1024 * 1024), randomBytes(10), Buffer.from('third\n')];
  const hexes: string[] = [];
  for (const b of bodies) hexes.push(await uploadBlob(origin.url, b));
  const total = bodies.reduce((n, b) => n + b.length, 0);

  const clean = await runCli(['verify', '--data', data]);
  t.equal(clean.code, EXIT.ok, clean.stderr);
  t.equal(clean.stdout, `checked 3 blobs, ${total} bytes: 0 damaged\n`);

  // One bit flipped in the large blob's file, as a failing disk would.
  const file = join(data, 'cas.v1', 'sha256', hexes[0]!.slice(0, 2), hexes[0]!);
  const bytes = rotInPlace(file, 1_000_000);
  const found = createHash('sha256').update(bytes).digest('hex');

  const live = await runCli(['verify', '--data', data]);
  t.equal(live.code, EXIT.integrity, 'exit 5: something is damaged');
  t.equal(live.stdout, `sha256:${hexes[0]}\t${bodies[0]!.length}\tsha256:${found}\tkept\nchecked 3 blobs, ${total} bytes: 1 damaged\n`);
  t.match(live.stderr, /1 of 3 blobs do not match their digest/);

  const refused = await runCli(['verify', '--data', data, '--remove']);
  t.equal(refused.code, EXIT.config, 'the live origin holds its data directory');
  t.match(refused.stderr, /in use/);
  t.ok(existsSync(file), 'nothing removed');

  await origin.app.close();
  const removed = await runCli(['verify', '--data', data, '--remove']);
  t.equal(removed.code, EXIT.integrity);
  t.match(removed.stdout, new RegExp(`^sha256:${hexes[0]}\\t\\d+\\tsha256:${found}\\tremoved\\nchecked 3 blobs, ${total} bytes: 1 damaged, 1 removed\\n$`));
  t.notOk(existsSync(file), 'the damaged blob is gone');

  const again = await startOrigin(t, { dataDir: data });
  await uploadBlob(again.url, bodies[0]!);
  await again.app.close();
  const restored = await runCli(['verify', '--data', data]);
  t.equal(restored.code, EXIT.ok, 'uploaded again, whole');
  t.equal(restored.stdout, `checked 3 blobs, ${total} bytes: 0 damaged\n`);
});

t.test('a path that is not an origin data directory (a typo, a file, another directory) is exit 4, not "0 damaged"; a stray file among the blobs is no blob', async (t) => {
  const dir = t.testdir({ afile: 'x', other: { 'notes.txt': 'x' } });
  for (const data of [join(dir, 'typo'), join(dir, 'afile'), join(dir, 'other')]) {
    const res = await runCli(['verify', '--data', data]);
    t.equal(res.code, EXIT.notFound, data);
    t.match(res.stderr, `no origin data directory at ${data} (no cas.v1 in it)`);
    t.notMatch(res.stdout, /checked/);
  }
  const data = join(dir, 'data');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(join(data, 'cas.v1', 'sha256'), { recursive: true });
  writeFileSync(join(data, 'cas.v1', 'sha256', '.DS_Store'), 'a file manager was here');
  const res = await runCli(['verify', '--data', data]);
  t.same([res.code, res.stdout], [0, 'checked 0 blobs, 0 bytes: 0 damaged\n'], 'skipped, as before');
});

t.test('verify --remove keeps a blob its S3 storage could not read whole (a body cut short): only a blob read whole and hashing to another digest is damage', async (t) => {
  const dir = t.testdir();
  // Between verify and S3: GETs of blobs answer their headers and half their body, then the connection is cut.
  const proxy = createServer((req, res) => {
    const upstream = httpRequest(`${s3.endpoint}${req.url}`, { method: req.method, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode!, up.headers);
      if (req.method !== 'GET' || !req.url!.includes('/cas/')) return void up.pipe(res);
      const length = Number(up.headers['content-length']);
      let sent = 0;
      up.on('data', (chunk: Buffer) => {
        const room = Math.floor(length / 2) - sent;
        if (room > 0) res.write(chunk.subarray(0, room));
        sent += Math.min(room, chunk.length);
        if (sent >= length / 2 - 1) { up.destroy(); res.socket?.destroy(); }
      });
    });
    upstream.on('error', () => res.socket?.destroy());
    req.pipe(upstream);
  });
  const proxyUrl = await serveOnLoopback(t, proxy);
  const config = join(dir, 'origin.yaml');
  writeFileSync(config, [
    `data: ${join(dir, 'data')}`,
    ...s3StorageYaml(proxyUrl, s3.bucket, 'cut'),
    '',
  ].join('\n'));
  const direct = new S3BlobStore({ bucket: s3.bucket, region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, credentials: S3RVER_CREDENTIALS, prefix: 'cut' });
  const body = randomBytes(200_000);
  const { digest } = await direct.put(Readable.from([body]));

  const res = await runCli(['verify', '--config', config, '--remove']);
  t.equal(res.code, EXIT.integrity, 'reported: the blob could not be checked');
  t.match(res.stdout, new RegExp(`^sha256:${digest.hex}\\t200000\\tunreadable: [^\\n]+\\tkept\\n`));
  t.ok(await direct.has(digest), 'the blob, whole in S3, is still there');
});

t.test('a blob deleted between the listing and its read (an origin pruning beside verify) is skipped, not reported unreadable', async (t) => {
  const dir = t.testdir();
  const direct = new S3BlobStore({ bucket: s3.bucket, region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, credentials: S3RVER_CREDENTIALS, prefix: 'pruned' });
  const kept = randomBytes(1000);
  await direct.put(Readable.from([kept]));
  const { digest: pruned } = await direct.put(Readable.from([randomBytes(2000)]));
  // Between verify and S3: the GET of `pruned`, listed already, comes after its deletion.
  const proxy = createServer((req, res) => {
    const forward = () => {
      const upstream = httpRequest(`${s3.endpoint}${req.url}`, { method: req.method, headers: req.headers }, (up) => {
        res.writeHead(up.statusCode!, up.headers);
        up.pipe(res);
      });
      upstream.on('error', () => res.socket?.destroy());
      req.pipe(upstream);
    };
    if (req.method === 'GET' && req.url!.includes(`/cas/sha256/${pruned.hex.slice(0, 2)}/${pruned.hex}`)) void direct.delete(pruned).then(forward);
    else forward();
  });
  const proxyUrl = await serveOnLoopback(t, proxy);
  const config = join(dir, 'origin.yaml');
  writeFileSync(config, [`data: ${join(dir, 'data')}`, ...s3StorageYaml(proxyUrl, s3.bucket, 'pruned'), ''].join('\n'));

  const res = await runCli(['verify', '--config', config]);
  t.equal(res.code, 0, res.stderr);
  t.equal(res.stdout, `checked 1 blobs, ${kept.length} bytes: 0 damaged; 1 deleted since listed, skipped\n`);
  t.notOk(await direct.has(pruned), 'it was deleted meanwhile');
});
