// apply --expect: the result is hashed with the expected digest's algorithm; --max-size bounds it.
import t from 'tap';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../helpers/cli.js';
import { EXIT } from '../../src/errors.js';

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

t.test('a delta that rebuilds more than --max-size (a few KiB standing for gigabytes: a crafted one fills the disk) stops there, nothing written; the bound holds with --expect too', async (t) => {
  const dir = t.testdir({ base: '' });
  const p = (name: string) => join(dir, name);
  const big = 16 * 1024 * 1024;
  writeFileSync(p('zeros'), Buffer.alloc(big)); // zeros: a delta of a few KiB
  t.equal((await runCli(['delta', '--base', p('base'), p('zeros'), '-o', p('d'), '--compression', 'gzip'])).code, 0);
  t.ok(statSync(p('d')).size < big / 100, 'the delta is small');
  const sha256 = createHash('sha256').update(readFileSync(p('zeros'))).digest('hex');
  for (const expect of [[], ['--expect', `sha256:${sha256}`]]) {
    const over = await runCli(['apply', '--base', p('base'), p('d'), '-o', p('out'), '--max-size', '1MiB', ...expect]);
    t.equal(over.code, EXIT.failure, `${expect.join(' ')}: ${over.stderr}`);
    t.match(over.stderr, /rebuilds more than 1\.0 MiB \(--max-size\)/, 'says which bound');
    t.same(readdirSync(dir).sort(), ['base', 'd', 'zeros'], 'nothing written');
  }
  const within = await runCli(['apply', '--base', p('base'), p('d'), '-o', p('out'), '--max-size', `${big}`]);
  t.equal(within.code, 0, within.stderr);
  t.equal(within.stdout, `sha256:${sha256}\t${big}\t${p('out')}\n`, 'a result of --max-size exactly is whole');
  const refused = await runCli(['apply', '--base', p('base'), p('d'), '-o', p('out2'), '--max-size', 'lots']);
  t.equal(refused.code, EXIT.usage);
  t.match(refused.stderr, /--max-size: must be a size/);
});
