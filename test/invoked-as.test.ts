// The command lines fleetcache tells a user to type (src/invoked-as.ts), for each way it
// is started: from a checkout, from the PATH, under `npm run` from a subdirectory.
import t from 'tap';
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { commandLine, pathForUser } from '../src/invoked-as.js';

/** A checkout with its entry point bin/fleetcache.js, and a bin directory holding a `fleetcache` link to it. */
function checkout(dir: string): { root: string; entry: string; bin: string } {
  const root = join(dir, 'checkout');
  mkdirSync(join(root, 'bin'), { recursive: true });
  mkdirSync(join(root, 'docs'));
  const entry = join(root, 'bin', 'fleetcache.js');
  writeFileSync(entry, '#!/usr/bin/env node\n');
  chmodSync(entry, 0o755);
  const bin = join(dir, 'usr-bin');
  mkdirSync(bin);
  symlinkSync(entry, join(bin, 'fleetcache'));
  return { root, entry, bin };
}

t.test('from a checkout: node and the entry point, relative to the directory the user is in', async (t) => {
  const { root } = checkout(t.testdir());
  t.equal(commandLine(['report', '--data', 'cache'], { entry: join(root, 'bin/fleetcache.js'), env: { PATH: '/usr/bin:/bin' }, cwd: root }), 'node bin/fleetcache.js report --data cache');
});

t.test('started from the PATH as fleetcache: the bare name; the same file under another name on the PATH is not it', async (t) => {
  const { root, bin, entry } = checkout(t.testdir());
  const env = { PATH: `/usr/bin:${bin}` };
  t.equal(commandLine(['report'], { entry: join(bin, 'fleetcache'), env, cwd: root }), 'fleetcache report');
  t.equal(commandLine(['report'], { entry, env, cwd: root }), 'node bin/fleetcache.js report', 'bin/fleetcache.js is not what `fleetcache` runs on the PATH');
});

t.test("npm's node_modules/.bin on the PATH is for npm's child only: not taken for the user's", async (t) => {
  const dir = t.testdir();
  const { root, entry } = checkout(dir);
  const npmBin = join(dir, 'node_modules', '.bin');
  mkdirSync(npmBin, { recursive: true });
  symlinkSync(entry, join(npmBin, 'fleetcache'));
  t.equal(commandLine(['report'], { entry: join(npmBin, 'fleetcache'), env: { PATH: `${npmBin}:/usr/bin` }, cwd: root }), `node ${join(npmBin, 'fleetcache')} report`);
});

t.test('npm run from a subdirectory (INIT_CWD): paths outside it absolute, and quoted when the shell would split them', async (t) => {
  const { root, entry } = checkout(join(t.testdir(), 'a dir'));
  const o = { entry, env: { PATH: '/usr/bin', INIT_CWD: join(root, 'docs') }, cwd: root };
  t.equal(commandLine(['report', '--data', pathForUser('cache', o)], o), `node '${entry}' report --data '${join(root, 'cache')}'`);
  t.equal(pathForUser('docs/x', o), 'x', 'inside it: relative to it');
});
