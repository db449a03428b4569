// One server per data directory: a second origin or cache on a directory in use is refused
// (exit 3, FC_ERR_DIR_IN_USE, the holder's PID) before it touches anything, and the lock
// of a killed server is free at once.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, realpathSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { EXIT } from '../../src/errors.js';
import { LOCK_ID, lockDataDir } from '../../src/store/dir-lock.js';
import { runCli } from '../helpers/cli.js';
import { exitedPid, startServerProcess } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';

t.test('in one process: held until released, whatever the path it is named by', async (t) => {
  const dir = t.testdir({ data: {} });
  const data = join(dir, 'data');
  symlinkSync(data, join(dir, 'alias'));
  const lock = await lockDataDir(data);
  const inUse = { code: 'FC_ERR_DIR_IN_USE', message: new RegExp(`is in use by another fleetcache server \\(pid ${process.pid}\\)`) };
  await t.rejects(lockDataDir(data), inUse);
  await t.rejects(lockDataDir(join(dir, 'alias')), inUse, 'through a symlink too');
  const other = await lockDataDir(dir);
  await other.release();
  await lock.release();
  await lock.release();
  await (await lockDataDir(join(dir, 'alias'))).release();
  t.pass('free again once released');
});

t.test('another local user cannot take the lock first: its name comes from a secret only the owner reads', async (t) => {
  const data = join(t.testdir({ data: {} }), 'data');
  // what anyone on the machine could compute from the path alone: the name the lock had before
  const guessed = `\0fleetcache-dir-${createHash('sha256').update(realpathSync(data)).digest('hex').slice(0, 40)}`;
  const squatter = createServer();
  await new Promise<void>((resolve) => squatter.listen(guessed, resolve));
  t.teardown(() => new Promise<void>((resolve) => squatter.close(() => resolve())));
  const lock = await lockDataDir(data);
  t.equal(statSync(join(data, LOCK_ID)).mode & 0o777, 0o600, 'the secret is readable by its owner only');
  await t.rejects(lockDataDir(data), { code: 'FC_ERR_DIR_IN_USE' }, 'still one server per directory');
  await lock.release();
});

for (const [what, args] of [
  ['origin', ['origin']],
  ['cache with workers', ['cache', '--upstream', 'http://127.0.0.1:9', '--workers', '2']],
] as const) {
  t.test(`${what}: a second server on its directory is refused and loses nothing; a killed one frees it`, async (t) => {
    const data = join(t.testdir(), 'data');
    const first = await startServerProcess(t, [...args, '--listen', '127.0.0.1:0', '--data', data]);
    // What a transfer in progress keeps in tmp/: a second server's start would have emptied it.
    mkdirSync(join(data, 'tmp'), { recursive: true });
    writeFileSync(join(data, 'tmp', 'in-progress'), 'half an upload');
    const second = await runCli([...args, '--listen', '127.0.0.1:0', '--data', data]);
    t.equal(second.code, EXIT.config);
    t.match(second.stderr, new RegExp(`^fleetcache: error: data directory ${data} is in use by another fleetcache server \\(pid ${first.child.pid}\\)`));
    t.ok(existsSync(join(data, 'tmp', 'in-progress')), 'the first server\'s tmp/ is untouched');
    first.child.kill('SIGKILL');
    await eventually('the killed server\'s lock is free', async () => {
      try {
        await (await lockDataDir(data)).release();
        return true;
      } catch {
        return false;
      }
    });
  });
}

t.test('a lock secret that cannot be read is a configuration error naming the directory, not a crash', async (t) => {
  const data = join(t.testdir({ data: {} }), 'data');
  mkdirSync(join(data, LOCK_ID)); // a directory where the file should be: unreadable as a file, whoever runs the test
  await t.rejects(lockDataDir(data), { code: 'FC_ERR_CONFIG', message: new RegExp(`data directory ${data}: cannot read or write its lock secret \\.lock-id: `) });
});

t.test('an empty lock secret (a power loss before it was synced) is refused, naming it, not taken for the secret ""', async (t) => {
  const data = t.testdir({ [LOCK_ID]: '\n' });
  await t.rejects(lockDataDir(data), { code: 'FC_ERR_CONFIG', message: new RegExp(`${LOCK_ID}: \\S*${LOCK_ID} is empty .*remove it`) });
});

t.test("a real origin's start removes the temp files of its lock secret and token that a killed process left, never a live process's nor a young one's", async (t) => {
  const data = join(t.testdir({ data: {} }), 'data');
  // What readOrCreate leaves when SIGKILLed between writing its temp file and linking it.
  const dead = exitedPid();
  const leftovers = [`${LOCK_ID}.${dead}.0123456789ab`, `token.${dead}.ba9876543210`];
  const live = [`${LOCK_ID}.${process.pid}.0123456789ab`, `token.${process.pid}.ba9876543210`];
  // not of that shape: another program's, or the operator's
  const others = [`${LOCK_ID}.${dead}`, `token.${dead}.backup`, `token.bak.${dead}.0123456789ab`];
  // A dead PID's written just now: maybe another host's or container's (a PID is this
  // namespace's only), whose live process is about to link it.
  const young = [`${LOCK_ID}.${dead}.cdef01234567`, `token.${dead}.76543210fedc`];
  for (const name of [...leftovers, ...live, ...others, ...young]) writeFileSync(join(data, name), 'a secret\n', { mode: 0o600 });
  // the others were written an hour ago: a temp file is linked within milliseconds
  const anHourAgo = new Date(Date.now() - 3_600_000);
  for (const name of [...leftovers, ...live, ...others]) utimesSync(join(data, name), anHourAgo, anHourAgo);
  const again = await startServerProcess(t, ['origin', '--listen', '127.0.0.1:0', '--data', data], { FLEETCACHE_TOKEN: '' });
  for (const name of leftovers) t.notOk(existsSync(join(data, name)), `${name} (pid ${dead}, gone) is removed`);
  for (const name of [...live, ...others, ...young]) t.ok(existsSync(join(data, name)), `${name} stays`);
  await again.stop();
});
