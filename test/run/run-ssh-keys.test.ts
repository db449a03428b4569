// `fleetcache run` over SSH, keys: a backend's key file kept in the project reaches no machine and
// no base; knownHosts refuses a host whose key it does not list. The sshd and project: ssh-project.ts.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { keygenFingerprint, publicKeyOf } from '../ssh/sshd.js';
import { run } from './project.js';
import { oneHostProject, sshProject } from './ssh-project.js';

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

t.test('an SSH key file kept in the project reaches no machine and no base (ssh and adhoc backends)', async (t) => {
  for (const type of ['ssh', 'adhoc'] as const) {
    await t.test(type, async (t) => {
      const { base, sshd, dir } = await sshProject(t);
      await rm(join(dir, 'tests'), { recursive: true, force: true });
      await mkdir(join(dir, 'keys'));
      await cp(sshd.keyPath, join(dir, 'keys', 'lab'));
      const backend = type === 'ssh'
        ? ['  lab:', '    type: ssh', '    hosts:', `      - address: 127.0.0.1:${sshd.port}`, '        key: keys/lab', '    systems: [debian-12]']
        : ['  lab:', '    type: adhoc', '    key: keys/lab', '    allocate: |', `      ADDRESS 127.0.0.1:${sshd.port}`, '    systems: [debian-12]'];
      const { machine, tar } = await shipped(t, dir, base, backend);
      t.ok(machine.includes('./spread.yaml'), 'the machine has the project');
      t.notOk(machine.includes('./keys/lab'), 'not the key that logs into every host of the backend');
      t.ok(tar.includes('spread.yaml'), 'the base holds the project');
      t.notOk(tar.includes('keys/lab'), 'the base (public at the origin) does not hold the key');
    });
  }
});

t.test("the key file of a backend the run's filters leave out reaches no machine and no base either", async (t) => {
  const { base, sshd, dir } = await sshProject(t);
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
  t.notOk(machine.includes('./keys/spare'), "not the key of the backend left out");
  t.notOk(tar.includes('keys/spare'), 'nor the base (public at the origin)');
  t.notOk(machine.includes('./keys/lab') || tar.includes('keys/lab'), "nor the run's own backend's");
});

t.test('knownHosts (fleetcache: in spread.yaml): an ssh host whose key is not the listed one fails to connect, naming its fingerprint; the listed key runs', async (t) => {
  const { base, sshd, dir } = await oneHostProject(t, 'summary: one\nexecute: echo one\n');
  const spread = (await readFile(join(dir, 'spread.yaml'), 'utf8')) + 'fleetcache:\n  knownHosts: known_hosts\n';
  await writeFile(join(dir, 'spread.yaml'), spread);
  const name = `[127.0.0.1]:${sshd.port}`;
  const hostKey = publicKeyOf(sshd.hostKeyFile);
  // another host's key listed for this one: as a machine in the middle would present
  spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(base, 'other_key')]);
  await writeFile(join(dir, 'known_hosts'), `${name} ${publicKeyOf(join(base, 'other_key.pub'))}\n`);
  const { result: refused, out: refusedOut } = await run(dir, [], { dataRoot: join(base, 'cache') });
  t.equal(refused.tally.ok, false, 'the run fails');
  t.equal(refused.tally.successful, 0);
  t.match(refusedOut, `Host 127.0.0.1:${sshd.port} of backend lab is passed over for the rest of the run: cannot connect to 127.0.0.1:${sshd.port}: host key verification failed: host ${name} presented the ssh-ed25519 key ${keygenFingerprint(sshd.hostKeyFile)}`);
  await writeFile(join(dir, 'known_hosts'), `${name} ${hostKey}\n`);
  const { result: listed, out: listedOut } = await run(dir, [], { dataRoot: join(base, 'cache') });
  if (!listed.tally.ok) t.comment(listedOut);
  t.equal(listed.tally.successful, 1, 'the host with its listed key runs the job');
});

t.test('knownHosts with adhoc machines: a host the allocate script does not list is refused; one it appends to the file before ADDRESS connects', async (t) => {
  const { base, sshd, dir, remote } = await oneHostProject(t, 'summary: one\nexecute: echo one\n');
  const knownHosts = join(base, 'known_hosts');
  await writeFile(knownHosts, '');
  const project = (allocate: string): string =>
    `project: adhoc\npath: ${remote}\nbackends:\n  cloud:\n    type: adhoc\n    key: ${sshd.keyPath}\n    allocate: |\n${allocate}    systems: [debian-12]\nsuites:\n  tests/:\n    summary: one\nfleetcache:\n  knownHosts: ${knownHosts}\n`;
  await writeFile(join(dir, 'spread.yaml'), project(`      ADDRESS 127.0.0.1:${sshd.port}\n`));
  const { result: refused, out: refusedOut } = await run(dir, [], { dataRoot: join(base, 'cache') });
  t.equal(refused.tally.successful, 0, 'an unlisted adhoc host runs nothing');
  t.match(refusedOut, `which ${knownHosts} does not list for [127.0.0.1]:${sshd.port}`);
  // what a cloud's allocate script does with the key its new machine reports
  await writeFile(join(dir, 'spread.yaml'), project(`      echo "[127.0.0.1]:${sshd.port} $(cut -d' ' -f1,2 ${sshd.hostKeyFile})" >> ${knownHosts}\n      ADDRESS 127.0.0.1:${sshd.port}\n`));
  const { result: listed, out: listedOut } = await run(dir, [], { dataRoot: join(base, 'cache') });
  if (!listed.tally.ok) t.comment(listedOut);
  t.equal(listed.tally.successful, 1, 'the key the allocate script appended is read at connect');
});
