import t from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { SshClient } from '../../src/ssh/client.js';
import { freePort, startSshd } from './sshd.js';

t.test('ssh client against a real sshd', async (t) => {
  const dir = t.testdir();
  const sshd = await startSshd(t, dir);
  const base = join(dir, 'remote');
  const c = await SshClient.connect({ host: sshd.host, port: sshd.port, username: 'root', privateKey: sshd.key }, { timeout: 5000 }, base);
  t.teardown(() => c.close());

  t.equal(await c.command(`mkdir -p ${base}/sub`), 0);
  let r = await c.exec('echo "$GREETING from $(pwd)"; echo err >&2', { env: [['GREETING', 'hello']], trace: false, cwd: 'sub' });
  t.equal(r.exitCode, 0);
  t.equal(r.output, `hello from ${base}/sub\nerr\n`, 'exports, cwd, combined output; the pid marker is hidden');
  r = await c.exec('echo "$PATH"', { trace: false });
  t.equal(r.output, '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/snap/bin\n', "spread's fixed PATH");
  r = await c.exec('exit 7', { trace: false });
  t.equal(r.exitCode, 7);
  r = await c.exec('ERROR bad thing', {});
  t.equal(r.exitCode, 213);
  t.match(r.output, /<ERROR bad thing>/);

  const chunks: string[] = [];
  const started = Date.now();
  r = await c.exec(`echo started; (sleep 20; touch ${base}/survived) & sleep 20`, { trace: false, killTimeout: 700, onOutput: (s) => chunks.push(s) });
  t.ok(r.killed, 'kill timeout reached');
  t.ok(Date.now() - started < 5000);
  t.same(chunks, ['started\n'], 'output streamed as it came');
  r = await c.exec('sleep 0.3; pgrep -f "sleep 20" || echo none', { trace: false });
  t.equal(r.output, 'none\n', 'the whole process group was killed');

  await c.upload(Readable.from([Buffer.from('streamed')]), 'deep/a/b.txt', 0o640);
  r = await c.exec('cat deep/a/b.txt; echo; stat -c %a deep/a/b.txt', { trace: false });
  t.equal(r.output, 'streamed\n640\n');
  await writeFile(join(dir, 'local.txt'), 'from a file');
  await c.upload(join(dir, 'local.txt'), `${base}/copied.txt`);
  await c.download('copied.txt', join(dir, 'back.txt'));
  t.equal(await readFile(join(dir, 'back.txt'), 'utf8'), 'from a file');
  await t.rejects(c.download('missing.txt', join(dir, 'nope.txt')));
});

t.test('connect retries, then fails with a clear error', async (t) => {
  const port = await freePort();
  const started = Date.now();
  await t.rejects(
    SshClient.connect({ host: '127.0.0.1', port, privateKey: 'x' }, { timeout: 1000, retries: 2, retryDelay: 100 }),
    { code: 'FC_ERR_UPSTREAM', message: new RegExp(`cannot connect to 127.0.0.1:${port}`) },
  );
  t.ok(Date.now() - started >= 200, 'waited between attempts');
});
