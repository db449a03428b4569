// Bad input on the command line of pack, delta, apply and push: a documented exit code and
// a one-line message (docs/errors.md), never exit 70 with a stack trace, and no output file.
import t from 'tap';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { expectCliError, growingFile } from './cli-helpers.js';
import { runCli } from '../helpers/cli.js';
import { packToFile } from '../../src/pack/packer.js';

t.test('missing inputs, a file for a directory, a missing output folder', async (t) => {
  const dir = t.testdir({ proj: { 'a.txt': 'a\n' }, 'file.txt': 'not a dir\n' });
  const p = (name: string) => join(dir, name);
  await runCli(['pack', p('proj'), '-o', p('base.tar')]);
  await runCli(['delta', '--base', p('base.tar'), p('base.tar'), '-o', p('d.br')]);
  const cases: [string, string[], number, RegExp][] = [
    ['pack of a missing directory', ['pack', p('nonexist'), '-o', p('o1.tar')], 4, /project directory .*nonexist does not exist/],
    ['pack of a file', ['pack', p('file.txt'), '-o', p('o2.tar')], 2, /file\.txt is not a directory/],
    ['pack into a missing folder', ['pack', p('proj'), '-o', p('nodir/o3.tar')], 4, /output folder .*nodir does not exist/],
    ['delta with a missing base', ['delta', '--base', p('nonexist'), p('base.tar'), '-o', p('o4')], 4, /base .*nonexist does not exist/],
    ['delta with a missing new file', ['delta', '--base', p('base.tar'), p('nonexist'), '-o', p('o5')], 4, /new file .*nonexist does not exist/],
    ['delta with a directory as base', ['delta', '--base', p('proj'), p('base.tar'), '-o', p('o6')], 2, /is a directory/],
    ['delta into a missing folder', ['delta', '--base', p('base.tar'), p('base.tar'), '-o', p('nodir/o7')], 4, /output folder/],
    ['apply of a missing delta', ['apply', '--base', p('base.tar'), p('nonexist'), '-o', p('o8')], 4, /delta .*nonexist does not exist/],
    ['apply with a missing base', ['apply', '--base', p('nonexist'), p('d.br'), '-o', p('o9')], 4, /base .*nonexist does not exist/],
    ['apply into a missing folder', ['apply', '--base', p('base.tar'), p('d.br'), '-o', p('nodir/o10')], 4, /output folder/],
    ['pull into a path under a file', ['pull', '--project', 'x', '--run', 'r', '--from', 'http://127.0.0.1:9', p('file.txt/sub')], 2, /target directory .*file\.txt\/sub: a folder on its path is a file/],
    ['pack of a path under a file', ['pack', p('file.txt/sub'), '-o', p('o11.tar')], 2, /file\.txt\/sub: a folder on its path is a file/],
    ['push of a missing directory', ['push', p('nonexist'), '--project', 'x', '--origin', 'http://127.0.0.1:9', '--base-cache', p('bc')], 4, /does not exist/],
    // refused before anything is packed or sent (the origin at port 9 would be unreachable: exit 6)
    ['push with a run id the origin refuses', ['push', p('proj'), '--project', 'x', '--run', 'bad/run', '--origin', 'http://127.0.0.1:9', '--base-cache', p('bc1')], 2, /run: slash, backslash, NUL, control or bidirectional control character refused/],
    ['push with a base cache bound of nothing', ['push', p('proj'), '--project', 'x', '--origin', 'http://127.0.0.1:9', '--base-cache', p('bc3'), '--base-cache-size', '0'], 2, /--base-cache-size: must be a size of at least 1 byte \(e\.g\. 4096, 512MiB, 50GiB\), not "0"/],
    ['push with a project name the origin refuses', ['push', p('proj'), '--project', 'x'.repeat(300), '--origin', 'http://127.0.0.1:9', '--base-cache', p('bc2')], 2, /project: segment longer than 200 bytes/],
  ];
  for (const [name, args, code, message] of cases) await expectCliError(t, name, args, code, message);
  t.same(readdirSync(dir).sort(), ['base.tar', 'd.br', 'file.txt', 'proj'], 'no output files left (no base cache made either)');
});

t.test('a file that changes while it is packed: exit 5 and a clear message', async (t) => {
  const dir = t.testdir({ proj: {} });
  const grows = join(dir, 'proj', 'grows.log');
  const stopGrowing = await growingFile(t, grows);
  await t.rejects(packToFile(join(dir, 'proj'), join(dir, 'x.tar')), { code: 'FC_ERR_SIZE_MISMATCH', message: /grows\.log changed while it was packed/ });
  const got = await runCli(['pack', join(dir, 'proj'), '-o', join(dir, 'out.tar')]);
  await stopGrowing();
  t.equal(got.code, 5);
  t.match(got.stderr, /changed while it was packed/);
});
