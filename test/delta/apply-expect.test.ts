// apply --expect: the result is hashed with the expected digest's algorithm.
import t from 'tap';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../helpers/cli.js';

t.test('--expect sha512 is compared as sha512', async (t) => {
  const dir = t.testdir({ proj: { 'a.txt': 'a\n' }, proj2: { 'a.txt': 'b\n' } });
  const p = (name: string) => join(dir, name);
  t.equal((await runCli(['pack', p('proj'), '-o', p('v1.tar')])).code, 0);
  t.equal((await runCli(['pack', p('proj2'), '-o', p('v2.tar')])).code, 0);
  t.equal((await runCli(['delta', '--base', p('v1.tar'), p('v2.tar'), '-o', p('d')])).code, 0);
  const sha512 = createHash('sha512').update(readFileSync(p('v2.tar'))).digest('hex');
  const ok = await runCli(['apply', '--base', p('v1.tar'), p('d'), '-o', p('out.tar'), '--expect', `sha512:${sha512}`]);
  t.equal(ok.code, 0, ok.stderr);
  t.same(readFileSync(p('out.tar')), readFileSync(p('v2.tar')));
  const bad = await runCli(['apply', '--base', p('v1.tar'), p('d'), '-o', p('bad.tar'), '--expect', `sha512:${'0'.repeat(128)}`]);
  t.equal(bad.code, 5);
  t.match(bad.stderr, new RegExp(`expected sha512:0{128}, got sha512:${sha512}`), 'both digests in sha512');
  t.notOk(readdirSync(dir).includes('bad.tar'));
});
