// A server whose stderr is a file on a full disk (a redirect, not the journal) keeps serving
// and stops when told: its log lines wait, then are written once there is room. It went
// down when a log write failed (ENOSPC), then hung for ever in the exit's flush of the log,
// answering nothing. A real origin, with stderr on a 1 MiB tmpfs the test fills.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { cliArgs, REPO_ROOT, SOURCE_LOADER, stopWithTest, treeModule } from '../helpers/processes.js';
import { mountTmpfs } from '../helpers/tmpfs.js';
import { eventually } from '../helpers/wait.js';

const isRoot = process.getuid?.() === 0;
/** A server that stopped answering fails the test in seconds, not at its timeout. */
const quick = { headersTimeout: 5000, bodyTimeout: 5000 };

/** Writes `file` until its filesystem is full. */
function fillUp(file: string): void {
  const fd = openSync(file, 'w');
  try {
    for (;;) writeFileSync(fd, Buffer.alloc(64 * 1024));
  } catch {
    // full
  } finally {
    closeSync(fd);
  }
}

t.test('stderr on a full disk: the server serves, its lines wait, it stops when told', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { dir, unmount } = mountTmpfs('1m', 'stderr');
  t.teardown(unmount);
  const data = t.testdir({ token: 'stderr-test-token-0123456789\n' });
  const errFile = join(dir, 'origin.err');
  const err = openSync(errFile, 'w');
  const child = spawn(process.execPath, cliArgs(['origin', '--listen', '127.0.0.1:0', '--data', join(data, 'data'), '--token-file', join(data, 'token')]), {
    cwd: REPO_ROOT, env: { ...process.env, FLEETCACHE_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', err],
  });
  closeSync(err);
  const stop = stopWithTest(t, child);
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  await eventually('the origin listens', () => /^listening (http:\S+)$/m.test(out), 60_000);
  const url = /^listening (http:\S+)$/m.exec(out)![1]!;

  fillUp(join(dir, 'filler'));
  // each 404 logs a line at info level: every one of these writes fails
  for (let i = 0; i < 50; i++) {
    const res = await request(`${url}/cas/sha256/${String(i).padStart(64, '0')}`, quick);
    await res.body.dump();
    t.equal(res.statusCode, 404, `request ${i} answered`);
  }
  const health = await request(`${url}/-/healthz`, quick);
  await health.body.dump();
  t.equal(health.statusCode, 200, 'still serving');

  rmSync(join(dir, 'filler'));
  const res = await request(`${url}/cas/sha256/${'f'.repeat(64)}`, quick);
  await res.body.dump();
  await eventually('the held lines written once there is room', () => readFileSync(errFile, 'utf8').includes('0'.repeat(62) + '49'));

  fillUp(join(dir, 'filler'));
  for (let i = 0; i < 5; i++) await (await request(`${url}/cas/sha256/${'e'.repeat(64)}`, quick)).body.dump();
  const before = Date.now();
  await stop();
  t.equal(child.signalCode, null, 'ended by itself, not killed');
  t.ok(Date.now() - before < 4000, `stopped in ${Date.now() - before} ms, the disk still full`);
});

/**
 * Runs `code` (an ES module importing `log` from src/log.ts) with stderr on `errFile`; its exit
 * code and how long it took. Stopped by `t` too: one waiting for room on a tmpfs the test
 * never frees (a test file that times out) would hold that tmpfs for ever.
 */
function runLogging(t: Test, errFile: string, code: string): Promise<{ code: number | null; ms: number }> {
  const err = openSync(errFile, 'a');
  const started = Date.now();
  const child = spawn(process.execPath, [...SOURCE_LOADER, '--input-type=module', '-e', `import { createLogger } from '${treeModule('src/log')}';\n${code}`], { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', err] });
  closeSync(err);
  stopWithTest(t, child, 'SIGKILL');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  return new Promise((resolve) => child.once('exit', (exitCode) => {
    clearTimeout(timer);
    resolve({ code: exitCode, ms: Date.now() - started });
  }));
}

t.test('the exit of a process whose stderr is a full disk: prompt, even when its first write fails then; held lines written once there is room', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const { dir, unmount } = mountTmpfs('1m', 'stderr-exit');
  t.teardown(unmount);
  const errFile = join(dir, 'err');
  const filler = join(dir, 'filler');
  fillUp(filler);
  // the first write of all fails at the exit's flush: sonic-boom retried it for ever
  const exited = await runLogging(t, errFile, "const log = createLogger(); log.info('one'); log.info('two'); process.exit(3);");
  t.same(exited.code, 3, `exit code kept, in ${exited.ms} ms`);
  t.ok(exited.ms < 8000, 'not held by the flush');
  // lines held while stderr failed, then room made, then the process ends by itself
  const ended = runLogging(t, errFile, `const log = createLogger();
    for (let i = 0; i < 20; i++) log.info('held line ' + i);
    const { existsSync } = await import('node:fs');
    const wait = () => { if (existsSync(${JSON.stringify(filler)})) setTimeout(wait, 20); };
    setTimeout(wait, 200);`);
  await new Promise((resolve) => setTimeout(resolve, 600));
  rmSync(filler);
  t.same((await ended).code, 0);
  const lines = readFileSync(errFile, 'utf8').split('\n').filter((l) => l.includes('held line'));
  t.equal(lines.length, 20, 'every held line written at the exit');
});
