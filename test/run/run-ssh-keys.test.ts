// `fleetcache run` over SSH, keys: a backend's key file kept in the project reaches no machine and
// no base; knownHosts refuses a host whose key it does not list. The sshd and project: ssh-project.ts.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { keygenFingerprint, publicKeyOf } from '../ssh/sshd.js';
import { run } from './project.js';
import { fileSshd, oneHostProject, sshProject } from './ssh-project.js';

// one sshd for the file, answering at a second loopback address too: the knownHosts runs reach
// it as a host of the ssh backend at 127.0.0.1 and as an adhoc machine at 127.0.0.2, which the
// known_hosts file names apart
const sshd = await fileSshd(t, { config: ['ListenAddress 127.0.0.2'] });

/**
 * The project's files on the machine (the task lists them in a file of the test: the
 * "machine" is this host) and in the run's base tar (the base cache's copy of what the
 * origin holds): what was shipped.
 */
async function shipped(t: Test, dir: string, base: string, backend: string[], filters: string[] = []): Promise<{ machine: string[]; tar: string[] }> {
  const listing = join(base, 'listing');
  await mkdir(join(dir, 'tests', 'one'), { recursive: true });
  await writeFile(join(dir, 'tests', 'one', 'task.yaml'), `summary: one\nexecute: cd "$SPREAD_PATH" && find . -type f > ${listing}\n`);
  await writeFile(join(dir, 'spread.yaml'), [`project: keyed`, `path: ${join(base, 'remote-project')}`, 'backends:', ...backend, 'suites:', '  tests/:', '    summary: one', ''].join('\n'));
  const { result, out } = await run(dir, filters, { dataRoot: join(base, 'cache') });
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.ok, true, 'the job ran with the key');
  const bases = join(base, 'cache', 'bases');
  const tarFile = (await readdir(bases)).find((f) => f.endsWith('.tar'))!;
  return {
    machine: (await readFile(listing, 'utf8')).split('\n'),
    tar: spawnSync('tar', ['-tf', join(bases, tarFile)], { encoding: 'utf8' }).stdout.split('\n'),
  };
}

t.test('an SSH key file kept in the project reaches no machine and no base (adhoc backend; the ssh backend: below)', async (t) => {
  const { base, dir } = await sshProject(t, sshd);
  await rm(join(dir, 'tests'), { recursive: true, force: true });
  await mkdir(join(dir, 'keys'));
  await cp(sshd.keyPath, join(dir, 'keys', 'lab'));
  const backend = ['  lab:', '    type: adhoc', '    key: keys/lab', '    allocate: |', `      ADDRESS 127.0.0.1:${sshd.port}`, '    systems: [debian-12]'];
  const { machine, tar } = await shipped(t, dir, base, backend);
  t.ok(machine.includes('./spread.yaml'), 'the machine has the project');
  t.notOk(machine.includes('./keys/lab'), 'not the key that logs into every host of the backend');
  t.ok(tar.includes('spread.yaml'), 'the base holds the project');
  t.notOk(tar.includes('keys/lab'), 'the base (public at the origin) does not hold the key');
});

t.test("over the ssh backend: neither its own key file nor that of a backend the run's filters leave out reaches a machine or the base", async (t) => {
  const { base, dir } = await sshProject(t, sshd);
  await rm(join(dir, 'tests'), { recursive: true, force: true });
  await mkdir(join(dir, 'keys'));
  await cp(sshd.keyPath, join(dir, 'keys', 'lab'));
  await cp(sshd.keyPath, join(dir, 'keys', 'spare'));
  const backends = [
    '  lab:', '    type: ssh', '    hosts:', `      - address: 127.0.0.1:${sshd.port}`, '        key: keys/lab', '    systems: [debian-12]',
    // never allocated in this run: its key is a credential all the same
    '  spare:', '    type: adhoc', '    key: keys/spare', '    allocate: ADDRESS 127.0.0.1:1', '    systems: [debian-12]',
  ];
  const { machine, tar } = await shipped(t, dir, base, backends, ['lab:']);
  t.ok(machine.includes('./spread.yaml'), 'the machine has the project');
  t.ok(tar.includes('spread.yaml'), 'the base holds the project');
  t.notOk(machine.includes('./keys/spare'), "not the key of the backend left out");
  t.notOk(tar.includes('keys/spare'), 'nor the base (public at the origin)');
  t.notOk(machine.includes('./keys/lab') || tar.includes('keys/lab'), "nor the run's own backend's");
});

t.test('knownHosts (in spread.yaml): an ssh host whose key is not the listed one and an adhoc host not listed are refused; the listed key runs, and one the allocate script appends before ADDRESS', async (t) => {
  const { base, dir, remote } = await oneHostProject(t, 'summary: one\nexecute: echo one\n', sshd);
  const knownHosts = join(dir, 'known_hosts');
  const [labName, cloudName] = [`[127.0.0.1]:${sshd.port}`, `[127.0.0.2]:${sshd.port}`];
  const hostKey = publicKeyOf(sshd.hostKeyFile);
  // a job on each backend: one of them is refused in each run, so they never share the project path
  const project = (allocate: string[]): string =>
    [
      'project: keyed', `path: ${remote}`, 'backends:',
      '  lab:', '    type: ssh', '    hosts:', `      - address: 127.0.0.1:${sshd.port}`, `        key: ${sshd.keyPath}`, '    systems: [debian-12]',
      '  cloud:', '    type: adhoc', `    key: ${sshd.keyPath}`, '    allocate: |', ...allocate.map((line) => `      ${line}`), '    systems: [debian-12]',
      'suites:', '  tests/:', '    summary: one', 'fleetcache:', '  knownHosts: known_hosts', '',
    ].join('\n');
  // another host's key listed for the ssh host: as a machine in the middle would present; the
  // adhoc script appends its machine's key, as a cloud's does with the key its new machine reports
  spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(base, 'other_key')]);
  await writeFile(knownHosts, `${labName} ${publicKeyOf(join(base, 'other_key.pub'))}\n`);
  await writeFile(join(dir, 'spread.yaml'), project([`echo "${cloudName} $(cut -d' ' -f1,2 ${sshd.hostKeyFile})" >> ${knownHosts}`, `ADDRESS 127.0.0.2:${sshd.port}`]));
  const first = await run(dir, [], { dataRoot: join(base, 'cache') });
  t.match(first.out, `Host 127.0.0.1:${sshd.port} of backend lab is passed over for the rest of the run: cannot connect to 127.0.0.1:${sshd.port}: host key verification failed: host ${labName} presented the ssh-ed25519 key ${keygenFingerprint(sshd.hostKeyFile)}`);
  t.same(first.result.tally.aborted, ['lab:debian-12:tests/one'], 'the ssh host with another key listed runs nothing');
  t.equal(first.result.tally.successful, 1, 'the key the allocate script appended is read at connect');
  if (first.result.tally.successful !== 1) t.comment(first.out);
  await writeFile(knownHosts, `${labName} ${hostKey}\n`);
  await writeFile(join(dir, 'spread.yaml'), project([`ADDRESS 127.0.0.2:${sshd.port}`]));
  const second = await run(dir, [], { dataRoot: join(base, 'cache') });
  t.match(second.out, `which ${knownHosts} does not list for ${cloudName}`);
  t.same(second.result.tally.aborted, ['cloud:debian-12:tests/one'], 'an unlisted adhoc host runs nothing');
  t.equal(second.result.tally.successful, 1, 'the ssh host with its listed key runs the job');
  if (second.result.tally.successful !== 1) t.comment(second.out);
});
