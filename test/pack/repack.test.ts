import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runRepack } from '../../src/pack/repack.js';

t.test('identity, transforming and failing repack scripts', async (t) => {
  const dir = t.testdir({ 'in.tar': 'pretend this is a tar\n', 'marker': 'm' });
  await runRepack('cat <&3 >&4', join(dir, 'in.tar'), join(dir, 'out.tar'), { cwd: dir });
  t.equal(readFileSync(join(dir, 'out.tar'), 'utf8'), 'pretend this is a tar\n', 'identity');
  await runRepack('tr a-z A-Z <&3 >&4; cat marker >&4', join(dir, 'in.tar'), join(dir, 'out2.tar'), { cwd: dir });
  t.equal(readFileSync(join(dir, 'out2.tar'), 'utf8'), 'PRETEND THIS IS A TAR\nm', 'cwd is the project root');
  writeFileSync(join(dir, 'out3.tar'), 'stale');
  await runRepack('echo fresh >&4', join(dir, 'in.tar'), join(dir, 'out3.tar'), { cwd: dir });
  t.equal(readFileSync(join(dir, 'out3.tar'), 'utf8'), 'fresh\n', 'fd 3 may be ignored; output truncated');
  await t.rejects(runRepack('echo broken >&2; exit 3', join(dir, 'in.tar'), join(dir, 'x.tar'), { cwd: dir }), { code: 'FC_ERR_PROJECT', message: /exit status 3\): broken/ });
  await t.rejects(runRepack('sleep 5; true', join(dir, 'in.tar'), join(dir, 'x.tar'), { cwd: dir, timeoutMs: 200 }), { message: /killed by SIGTERM/ });
});
