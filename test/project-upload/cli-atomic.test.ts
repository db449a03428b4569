// pack and delta write under a temporary name and rename on success: a failed run leaves
// nothing under the output name (and an older file there is kept as it was).
import t from 'tap';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { growingFile } from './cli-helpers.js';
import { runCli } from '../helpers/cli.js';

const cliCode = async (args: string[]): Promise<number> => (await runCli(args)).code;

t.test('pack that fails while reading leaves no tar', async (t) => {
  const dir = t.testdir({ proj: {} });
  const grows = join(dir, 'proj', 'grows.log');
  const stopGrowing = await growingFile(t, grows);
  t.equal(await cliCode(['pack', join(dir, 'proj'), '-o', join(dir, 'out.tar')]), 5);
  writeFileSync(join(dir, 'old.tar'), 'previous tar\n');
  t.equal(await cliCode(['pack', join(dir, 'proj'), '-o', join(dir, 'old.tar')]), 5);
  await stopGrowing();
  t.same(readdirSync(dir).sort(), ['old.tar', 'proj'], 'no out.tar, no temporary files');
  t.equal(readFileSync(join(dir, 'old.tar'), 'utf8'), 'previous tar\n', 'an older output is kept');
});

t.test('pack whose repack script fails half way leaves no tar', async (t) => {
  const dir = t.testdir({ proj: { 'a.txt': 'a\n' }, 'repack.sh': "cat <&3 >/dev/null; printf 'half a tar' >&4; exit 3\n" });
  t.not(await cliCode(['pack', join(dir, 'proj'), '-o', join(dir, 'out.tar'), '--repack', join(dir, 'repack.sh')]), 0);
  t.same(readdirSync(dir).sort(), ['proj', 'repack.sh']);
});

t.test('delta and apply leave only their output', async (t) => {
  const dir = t.testdir({ proj: { 'a.txt': 'a\n' } });
  t.equal(await cliCode(['pack', join(dir, 'proj'), '-o', join(dir, 'base.tar')]), 0);
  t.equal(await cliCode(['delta', '--base', join(dir, 'base.tar'), join(dir, 'base.tar'), '-o', join(dir, 'd.br')]), 0);
  t.equal(await cliCode(['apply', '--base', join(dir, 'base.tar'), join(dir, 'd.br'), '-o', join(dir, 'out.tar')]), 0);
  t.equal(await cliCode(['apply', '--base', join(dir, 'base.tar'), join(dir, 'd.br'), '-o', join(dir, 'bad.tar'), '--expect', `sha256:${'1'.repeat(64)}`]), 5);
  t.same(readdirSync(dir).sort(), ['base.tar', 'd.br', 'out.tar', 'proj']);
});
