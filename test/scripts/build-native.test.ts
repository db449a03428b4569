// scripts/build-native.mjs, run as `npm run build` runs it, into a test directory: it builds an
// addon that loads; without a working compiler it says why and that bodies go through buffers,
// removes a stale addon, and exits 0, or 1 under FLEETCACHE_REQUIRE_NATIVE=1 (as CI sets).
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const SCRIPT = fileURLToPath(new URL('../../scripts/build-native.mjs', import.meta.url));

function build(out: string, env: NodeJS.ProcessEnv): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [SCRIPT, out], { env: { ...process.env, FLEETCACHE_REQUIRE_NATIVE: '', ...env }, timeout: 60_000 }, (err, _stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stderr });
    });
  });
}

t.test('with a compiler: an addon that loads, at the path given', async (t) => {
  const out = join(t.testdir(), 'sendfile.node');
  const { code, stderr } = await build(out, {});
  t.equal(code, 0, stderr);
  const addon = createRequire(import.meta.url)(out) as Record<string, unknown>;
  t.same(Object.keys(addon).sort(), ['cancel', 'start'], 'the functions src/http/zero-copy.ts calls');
});

t.test('no compiler: a message, the stale addon removed, exit 0; exit 1 when required', async (t) => {
  const dir = t.testdir();
  const out = join(dir, 'sendfile.node');
  writeFileSync(out, 'an addon built from an older source');
  const optional = await build(out, { CC: join(dir, 'no-such-cc') });
  t.equal(optional.code, 0, 'optional: the build goes on');
  t.match(optional.stderr, /build-native: no C compiler \(.*no-such-cc\); large bodies will be sent through buffers, without sendfile/);
  t.notOk(existsSync(out), 'no stale addon left to load');

  const required = await build(out, { CC: join(dir, 'no-such-cc'), FLEETCACHE_REQUIRE_NATIVE: '1' });
  t.equal(required.code, 1, 'required: the build fails');
  t.match(required.stderr, /no C compiler .*FLEETCACHE_REQUIRE_NATIVE=1: failing/);
});

t.test('a compiler that fails midway: said so, nothing left behind', async (t) => {
  const dir = t.testdir();
  // Writes part of its output, then fails (as a compiler killed or out of space would).
  const cc = join(dir, 'failing-cc');
  writeFileSync(cc, '#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = -o ] && echo partial > "$2"; shift; done\nexit 1\n', { mode: 0o755 });
  const out = join(dir, 'addon', 'sendfile.node');
  const { code, stderr } = await build(out, { CC: cc });
  t.equal(code, 0);
  t.match(stderr, /build-native: .*failing-cc failed; large bodies will be sent through buffers/);
  t.same(readdirSync(join(dir, 'addon')), [], 'no addon, no partial temp file');
});
