// A real S3-compatible server (s3rver, from npm) on 127.0.0.1:0 as a child process,
// stopped by its PID in the test's teardown. It speaks the S3 REST calls the S3 store
// uses: PutObject, multipart uploads, GetObject with Range, HeadObject, CopyObject,
// DeleteObject, ListObjectsV2 with continuation tokens (not UploadPartCopy).
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Test } from 'tap';
import { stopWithTest } from './processes.js';

/** s3rver's fixed credentials. */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

interface TestS3Server {
  readonly endpoint: string;
  readonly bucket: string;
  readonly pid: number;
  /** Where its filesystem store keeps the buckets. */
  readonly dir: string;
}

export async function startS3rver(t: Test, bucket = 'fleetcache'): Promise<TestS3Server> {
  const bin = createRequire(import.meta.url).resolve('s3rver/bin/s3rver.js');
  // Not t.testdir(): the test may call that itself, which empties it.
  const dir = mkdtempSync(join(tmpdir(), 'fleetcache-s3rver-'));
  // --openssl-legacy-provider: s3rver encrypts ListObjectsV2's continuation tokens with DES,
  // which OpenSSL 3 has only there; without it every listing past 1000 keys fails (a 500).
  const child = spawn(process.execPath, ['--openssl-legacy-provider', bin, '-d', dir, '-a', '127.0.0.1', '-p', '0', '-s', '--no-vhost-buckets', '--configure-bucket', bucket], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (c: Buffer) => { err = (err + c.toString()).slice(-10_000); });
  stopWithTest(t, child, 'SIGKILL');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const endpoint = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`s3rver did not start within 20 s: ${err}`)), 20_000);
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /listening on ([\d.]+):(\d+)/.exec(out);
      if (m) { clearTimeout(timer); resolve(`http://${m[1]}:${m[2]}`); }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`s3rver exited with ${code}: ${err}`)); });
  });
  return { endpoint, bucket, pid: child.pid!, dir };
}

/**
 * The `storage:` lines of an origin configuration on the S3 server at `endpoint`, its
 * credentials read from the variables TEST_S3_KEY and TEST_S3_SECRET.
 */
export function s3StorageYaml(endpoint: string, bucket: string, prefix?: string): string[] {
  return [
    'storage:', '  type: s3', `  endpoint: ${endpoint}`, `  bucket: ${bucket}`, '  region: us-east-1',
    ...(prefix === undefined ? [] : [`  prefix: ${prefix}`]),
    '  forcePathStyle: true', '  accessKeyIdEnv: TEST_S3_KEY', '  secretAccessKeyEnv: TEST_S3_SECRET',
  ];
}

/**
 * Objects of body `body` under `keys` of the server's bucket, written straight into its
 * filesystem store as its PutObject leaves them (<dir>/<bucket>/<key>._S3rver_object; it
 * makes an object's md5 file when it first reads it, and takes a missing metadata file for
 * none), where a PutObject each costs both processes 6 ms of CPU. For tests of listings,
 * which read keys, not bytes. Synchronously, each directory made once: a promise, a trip to
 * the thread pool and a recursive mkdir per file cost more than the write itself.
 */
export function writeObjectsDirectly(server: TestS3Server, keys: readonly string[], body: string): void {
  const made = new Set<string>();
  for (const key of keys) {
    const file = join(server.dir, server.bucket, `${key}._S3rver_object`);
    if (!made.has(dirname(file))) mkdirSync(dirname(file), { recursive: true });
    made.add(dirname(file));
    writeFileSync(file, body);
  }
}
