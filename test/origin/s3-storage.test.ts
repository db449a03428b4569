// The origin on S3-compatible object storage, end to end: `fleetcache origin` with a
// `storage: {type: s3}` configuration, against a real S3 server (s3rver) on loopback.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { request } from 'undici';
import { createBlobStore } from '../../src/cli/origin.js';
import { startS3rver, s3StorageYaml, S3RVER_CREDENTIALS } from '../helpers/s3rver.js';
import { startServerProcess } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { buildOrigin } from '../../src/origin/server.js';
import { S3BlobStore } from '../../src/store/s3.js';
import { EXIT } from '../../src/errors.js';
import { runCli } from '../helpers/cli.js';
import { deadUrl } from '../helpers/loopback-server.js';

const TOKEN = 'e2e-token-abcdef';
// One S3 server for the file (a start is a node process and s3rver's modules): each test
// keeps to a key prefix of its own.
const s3 = await startS3rver(t);

t.test('PUT and GET /cas and artifacts through an origin whose blobs live in S3; at start it removes the half-written name records a crash left in its data directory\'s tmp/', async (t) => {
  const dir = t.testdir();
  // what a SIGKILL between a record's write and its rename leaves (names.ts)
  mkdirSync(join(dir, 'data', 'tmp'), { recursive: true });
  writeFileSync(join(dir, 'data', 'tmp', 'rec-0123456789abcdef'), '{"digest":"sha256:');
  const config = join(dir, 'origin.yaml');
  writeFileSync(join(dir, 'tokens'), `old-token-rotated-out\n${TOKEN}\n`);
  writeFileSync(config, [
    'listen: 127.0.0.1:0',
    `data: ${join(dir, 'data')}`,
    `tokenFile: ${join(dir, 'tokens')}`,
    'logLevel: warn',
    ...s3StorageYaml(s3.endpoint, s3.bucket, 'origin'),
    '',
  ].join('\n'));
  const origin = await startServerProcess(t, ['origin', '--config', config], {
    TEST_S3_KEY: S3RVER_CREDENTIALS.accessKeyId, TEST_S3_SECRET: S3RVER_CREDENTIALS.secretAccessKey,
  });
  t.same(readdirSync(join(dir, 'data', 'tmp')), [], 'the half-written name record is removed at start');
  const auth = { authorization: `Bearer ${TOKEN}` };

  const data = randomBytes(1_500_000);
  const hex = createHash('sha256').update(data).digest('hex');
  const put = await request(`${origin.url}/cas/sha256/${hex}`, { method: 'PUT', body: data, headers: auth });
  t.equal(put.statusCode, 201, await put.body.text());

  const wrong = await request(`${origin.url}/cas/sha256/${'0'.repeat(64)}`, { method: 'PUT', body: data, headers: auth });
  t.equal(wrong.statusCode, 400);
  t.match(await wrong.body.json(), { code: 'FC_ERR_DIGEST_MISMATCH' });

  const get = await request(`${origin.url}/cas/sha256/${hex}`);
  t.equal(get.statusCode, 200);
  t.ok(Buffer.from(await get.body.arrayBuffer()).equals(data));

  const ranged = await request(`${origin.url}/cas/sha256/${hex}`, { headers: { range: 'bytes=1000-1999' } });
  t.equal(ranged.statusCode, 206);
  t.ok(Buffer.from(await ranged.body.arrayBuffer()).equals(data.subarray(1000, 2000)));

  const head = await request(`${origin.url}/cas/sha256/${hex}`, { method: 'HEAD' });
  t.equal(head.statusCode, 200);
  t.equal(head.headers['content-length'], String(data.length));
  await head.body.dump();

  const missing = await request(`${origin.url}/cas/sha256/${'ab'.repeat(32)}`);
  t.equal(missing.statusCode, 404);
  await missing.body.dump();

  // A named artifact: the digest is not known in advance (temporary key, then copy).
  const art = await request(`${origin.url}/artifacts/run1/job1/log.txt`, { method: 'PUT', body: 'hello from a job\n', headers: auth });
  t.equal(art.statusCode, 201, await art.body.text());
  const back = await request(`${origin.url}/artifacts/run1/job1/log.txt`);
  t.equal(await back.body.text(), 'hello from a job\n');

  // The bytes are in the bucket under the configured prefix, and nothing temporary is left.
  const raw = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3RVER_CREDENTIALS });
  t.teardown(() => raw.destroy());
  const keys = ((await raw.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'origin/' }))).Contents ?? []).map((o) => o.Key);
  t.ok(keys.includes(`origin/cas/sha256/${hex.slice(0, 2)}/${hex}`));
  t.equal(keys.length, 2);
  t.notOk(keys.some((k) => k?.startsWith('origin/tmp/')));

  // fleetcache verify reads the bucket the configuration names: an object whose bytes were
  // replaced is listed, and --remove (the origin stopped) deletes it.
  await raw.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `origin/cas/sha256/${hex.slice(0, 2)}/${hex}`, Body: data.subarray(1) }));
  process.env.TEST_S3_KEY = S3RVER_CREDENTIALS.accessKeyId;
  process.env.TEST_S3_SECRET = S3RVER_CREDENTIALS.secretAccessKey;
  t.teardown(() => {
    delete process.env.TEST_S3_KEY;
    delete process.env.TEST_S3_SECRET;
  });
  const damaged = createHash('sha256').update(data.subarray(1)).digest('hex');
  const found = await runCli(['verify', '--config', config]);
  t.equal(found.code, EXIT.integrity, found.stderr);
  const artifact = Buffer.byteLength('hello from a job\n'); // the artifact's content is a blob too
  t.equal(found.stdout, `sha256:${hex}\t${data.length - 1}\tsha256:${damaged}\tkept\nchecked 2 blobs, ${data.length - 1 + artifact} bytes: 1 damaged\n`);
  await origin.stop();
  const removed = await runCli(['verify', '--config', config, '--remove']);
  t.match(removed.stdout, /\tremoved\nchecked 2 blobs, \d+ bytes: 1 damaged, 1 removed\n$/);
  const left = ((await raw.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'origin/cas/' }))).Contents ?? []).map((o) => o.Key);
  t.equal(left.length, 1, 'the artifact is kept');
  t.notOk(left.includes(`origin/cas/sha256/${hex.slice(0, 2)}/${hex}`), 'the damaged object is deleted from the bucket');
  // The AWS SDK's warning that its 2027 releases need Node 22 (said once in deploy/OPERATIONS.md) is not on every start's stderr.
  t.notMatch(origin.stderr(), /NodeVersionSupportWarning|AWS SDK/, 'no AWS SDK Node version warning');
});

t.test('createBlobStore refuses a credentials variable that is not set', async (t) => {
  const storage = { type: 's3' as const, bucket: 'b', region: 'us-east-1', accessKeyIdEnv: 'NOPE_KEY', secretAccessKeyEnv: 'NOPE_SECRET' };
  await t.rejects(createBlobStore(storage, t.testdir(), {}, 'origin.yaml'), { code: 'FC_ERR_CONFIG', message: /^origin\.yaml: storage\.accessKeyIdEnv names the environment variable NOPE_KEY, which is not set$/ });
  await t.rejects(createBlobStore({ ...storage, secretAccessKeyEnv: undefined }, t.testdir(), { NOPE_KEY: 'k' }, 'origin.yaml'), { code: 'FC_ERR_CONFIG', message: /^origin\.yaml: storage: give both/ });
  t.ok(await createBlobStore(storage, t.testdir(), { NOPE_KEY: 'k', NOPE_SECRET: 's' }));
});

t.test('a running origin on S3 removes the temporary keys interrupted uploads left, not only at its next start', async (t) => {
  const raw = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3RVER_CREDENTIALS });
  t.teardown(() => raw.destroy());
  // a day is a second here (LastModified has a one-second grain)
  const store = new S3BlobStore({ endpoint: s3.endpoint, bucket: s3.bucket, region: 'us-east-1', forcePathStyle: true, credentials: S3RVER_CREDENTIALS, prefix: 'sweep', tmpMaxAgeMs: 1000 });
  const { app } = await buildOrigin({ dataDir: t.testdir(), tokens: [TOKEN], logLevel: false, leftoverSweepMs: 200 }, store);
  t.teardown(() => app.close());
  await app.listen({ port: 0, host: '127.0.0.1' });
  // what a crash of another origin sharing the bucket left, or a put whose final delete failed
  await raw.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'sweep/tmp/interrupted-upload', Body: 'partial' }));
  const tmpKeys = async () => ((await raw.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'sweep/tmp/' }))).Contents ?? []).map((o) => o.Key);
  t.same(await tmpKeys(), ['sweep/tmp/interrupted-upload']);
  await eventually('the leftover removed', async () => (await tmpKeys()).length === 0, 10_000);
});

t.test('a read S3 refuses (403: credentials rotated or wrong) is a 503 naming the credentials and s3:ListBucket, not a 404', async (t) => {
  const options = { endpoint: s3.endpoint, bucket: s3.bucket, region: 'us-east-1', forcePathStyle: true, prefix: 'refused' };
  const good = new S3BlobStore({ ...options, credentials: S3RVER_CREDENTIALS });
  const data = randomBytes(1000);
  const { digest } = await good.put(Readable.from([data]));
  // s3rver answers 403 InvalidAccessKeyId to a key it does not know, as S3 does to a revoked one
  const refused = new S3BlobStore({ ...options, credentials: { accessKeyId: 'ROTATED', secretAccessKey: 'ROTATED' } });
  const refusal = { code: 'FC_ERR_UNAVAILABLE', message: /refused the credentials.*s3:ListBucket/ };
  await t.rejects(refused.stat(digest), refusal, 'HEAD');
  await t.rejects(refused.has(digest), refusal);
  await t.rejects(refused.createReadStream(digest), refusal, 'GET');

  // The credentials were rotated after the origin started (its start lists the bucket with them).
  refused.open = async () => undefined;
  const { app } = await buildOrigin({ dataDir: t.testdir(), tokens: [TOKEN], logLevel: false }, refused);
  t.teardown(() => app.close());
  await app.listen({ port: 0, host: '127.0.0.1' });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/cas/${digest.algo}/${digest.hex}`;
  for (const method of ['GET', 'HEAD'] as const) {
    const res = await request(url, { method });
    t.equal(res.statusCode, 503, method);
    if (method === 'GET') t.match(await res.body.json(), refusal);
    else await res.body.dump();
  }
});

t.test('an origin (or verify) on a bucket that does not exist or with an access key S3 does not know stops at start with exit 3, naming the file and the field, never the secret', async (t) => {
  const dir = t.testdir();
  const SECRET = 'the-secret-key-never-printed';
  t.teardown(() => {
    delete process.env.TEST_S3_KEY;
    delete process.env.TEST_S3_SECRET;
  });
  const cases = [
    { label: 'no such bucket', bucket: 'no-such-bucket', key: S3RVER_CREDENTIALS.accessKeyId, field: 'bucket', said: /: storage\.bucket: there is no bucket "no-such-bucket" at http:\/\/127\.0\.0\.1:\d+: create it/ },
    // s3rver answers 403 InvalidAccessKeyId to a key it does not know, as S3 does
    { label: 'unknown access key', bucket: s3.bucket, key: 'UNKNOWNKEY', field: 'accessKeyIdEnv', said: /: storage\.accessKeyIdEnv: http:\/\/127\.0\.0\.1:\d+ does not know the access key id in the variable storage\.accessKeyIdEnv names/ },
  ];
  for (const c of cases) {
    const config = join(dir, `${c.label.replace(/ /g, '-')}.yaml`);
    const lines = ['listen: 127.0.0.1:0', `data: ${join(dir, c.label.replace(/ /g, '-'))}`, `tokenFile: ${join(dir, 'tokens')}`, 'logLevel: warn', ...s3StorageYaml(s3.endpoint, c.bucket), ''];
    writeFileSync(config, lines.join('\n'));
    const fieldLine = lines.findIndex((l) => l.trim().startsWith(`${c.field}:`)) + 1;
    writeFileSync(join(dir, 'tokens'), `${TOKEN}\n`);
    process.env.TEST_S3_KEY = c.key;
    process.env.TEST_S3_SECRET = SECRET;
    for (const command of ['origin', 'verify']) {
      const run = await runCli([command, '--config', config]);
      t.equal(run.code, EXIT.config, `${c.label}, ${command}: ${run.stderr}`);
      t.match(run.stderr, c.said, `${c.label}, ${command}`);
      t.ok(run.stderr.includes(`${config}:${fieldLine}: storage.${c.field}: `), `${c.label}, ${command}: names the file and the line`);
      t.notOk(`${run.stdout}${run.stderr}`.includes(SECRET), `${c.label}, ${command}: no secret`);
    }
  }
});

t.test('an origin (or verify) whose S3 endpoint cannot be reached stops at start with exit 6 (it may come back: the unit restarts it), naming the file, the line and storage.endpoint', async (t) => {
  const dir = t.testdir();
  t.teardown(() => {
    delete process.env.TEST_S3_KEY;
    delete process.env.TEST_S3_SECRET;
  });
  process.env.TEST_S3_KEY = S3RVER_CREDENTIALS.accessKeyId;
  process.env.TEST_S3_SECRET = S3RVER_CREDENTIALS.secretAccessKey;
  const endpoint = await deadUrl();
  const lines = ['listen: 127.0.0.1:0', `data: ${join(dir, 'data')}`, `tokenFile: ${join(dir, 'tokens')}`, 'logLevel: warn', ...s3StorageYaml(endpoint, 'fleetcache'), ''];
  const config = join(dir, 'origin.yaml');
  writeFileSync(config, lines.join('\n'));
  writeFileSync(join(dir, 'tokens'), `${TOKEN}\n`);
  const endpointLine = lines.findIndex((l) => l.trim().startsWith('endpoint:')) + 1;
  for (const command of ['origin', 'verify']) {
    const run = await runCli([command, '--config', config]);
    t.equal(run.code, EXIT.unavailable, `${command}: ${run.stderr}`);
    t.ok(run.stderr.includes(`${config}:${endpointLine}: storage.endpoint: object storage list failed: `), `${command}: names the file, line and field: ${run.stderr}`);
    t.match(run.stderr, /ECONNREFUSED/, `${command}: says why`);
  }
});
