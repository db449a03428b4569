// `fleetcache run` over SSH: the ssh and adhoc backends reach a real sshd (Debian's openssh-server)
// on a loopback port; the agent goes over SFTP, pulls the project through the embedded
// cache and the tasks run through ssh2. The other run-ssh-*.test.ts files take shared and kept
// hosts, adhoc allocations, keys, what jobs leave running and lost connections: split so that each
// ends well within tap's per-file timeout under load.
import t from 'tap';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createServer, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { discardKeptMachines } from '../../src/run/discard.js';
import { RunLog } from '../../src/run/report.js';
import { isAlive } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { writeRebootScript } from '../ssh/sshd.js';
import { run } from './project.js';
import { fileSshd, sshProject, startRun } from './ssh-project.js';

// one sshd for the tests that neither stop nor break it (the REBOOT tests start their own); each has a project path of its own
const shared = await fileSshd(t);

t.test('the example project over the ssh backend', async (t) => {
  // One host: the project path lives on it, so one worker per system, one system.
  const { base, sshd, dir, remote } = await sshProject(t, shared);
  await writeFile(
    join(dir, 'spread.yaml'),
    `project: fleet-demo\npath: ${remote}\nenvironment:\n  GREETING: hello\nbackends:\n  lab:\n    type: ssh\n    hosts:\n      - address: 127.0.0.1:${sshd.port}\n        key: ${sshd.keyPath}\n    systems:\n      - debian-12:\n          region: region-a\nsuites:\n  tests/:\n    summary: over ssh\n`,
  );
  const { result, out } = await run(dir, [], { dataRoot: join(base, 'cache') });
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.ok, true, 'every job succeeded over ssh');
  t.equal(result.tally.successful, 4);
  t.equal(result.pulls.length, 1);
  t.match(result.pulls[0]!.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  t.match(out, /Executing lab:debian-12:tests\/hello \(lab:debian-12\)/);
});

t.test('the example project over the adhoc backend (allocate prints ADDRESS, discard runs at the end; region: auto measured on a machine without the project path yet), and the address serving the next run', async (t) => {
  const { base, sshd, dir, remote } = await sshProject(t, shared);
  const discarded = join(base, 'discarded');
  await writeFile(
    join(dir, 'spread.yaml'),
    [
      'project: fleet-demo',
      `path: ${remote}`,
      'environment:',
      '  GREETING: hello',
      'backends:',
      '  cloud:',
      '    type: adhoc',
      // spread's idiom: the key's text from a host command, evaluated before the machine is reached
      `    key: "$(HOST: cat ${sshd.keyPath})"`,
      '    allocate: |',
      `      ADDRESS 127.0.0.1:${sshd.port}`,
      '    discard: |',
      `      echo "$SPREAD_SYSTEM_ADDRESS" >> ${discarded}`,
      '    systems:',
      '      - debian-12:',
      '          region: auto',
      'suites:',
      '  tests/:',
      '    summary: over adhoc',
      '',
    ].join('\n'),
  );
  const { result, out } = await run(dir, [], { dataRoot: join(base, 'cache') });
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.ok, true, 'every job succeeded on the adhoc machine');
  t.equal(result.tally.successful, 4);
  t.equal((await readFile(discarded, 'utf8')).trim(), `127.0.0.1:${sshd.port}`, 'the discard script ran with the address');
  // the project path is not there yet when the caches are measured: the measure runs from /
  t.match(out, /pulls through http:\/\/127\.0\.0\.1:\d+ \(auto: http:\/\/127\.0\.0\.1:\d+ answered in [\d.]+ ms\)/, 'the cache answered the measure');
  // one address serving run after run (as a device of spread's external backend): what the last
  // run left at the project path goes before the project is sent
  const next = await run(dir, ['tests/hello'], { dataRoot: join(base, 'cache') });
  if (!next.result.tally.ok) t.comment(next.out);
  t.equal(next.result.tally.successful, 1, 'the next run on the same address passes');
  t.equal((await readFile(discarded, 'utf8')).trim(), `127.0.0.1:${sshd.port}\n127.0.0.1:${sshd.port}`, 'and its discard ran too');
});

/**
 * How long the discard script of the next test sleeps: far longer than the test waits for it
 * to be killed, so that a script left running is seen alive, not taken for one that ended.
 */
const DISCARD_SECONDS = 60;

t.test('a second signal during a discard kills the discard script: the machine stays on record, discarded once by run --discard', async (t) => {
  const { base, sshd, dir, remote } = await sshProject(t, shared);
  const started = join(base, 'discard.pid');
  const ended = join(base, 'discard.ended');
  await writeFile(
    join(dir, 'spread.yaml'),
    [
      'project: fleet-demo', `path: ${remote}`, 'backends:', '  cloud:', '    type: adhoc', `    key: "$(HOST: cat ${sshd.keyPath})"`,
      '    allocate: |', `      ADDRESS 127.0.0.1:${sshd.port}`,
      // the first discard (the run's) is cut by the second signal; the second (run --discard) ends
      '    discard: |', `      if [ -e ${started} ]; then echo second >> ${ended}; exit 0; fi`, `      echo $$ > ${started}`, `      sleep ${DISCARD_SECONDS}`, `      echo first >> ${ended}`,
      '    systems:', '      - debian-12', 'suites:', '  tests/:', '    summary: over adhoc', '',
    ].join('\n'),
  );
  await mkdir(join(dir, 'tests', 'slow'), { recursive: true });
  await writeFile(join(dir, 'tests', 'slow', 'task.yaml'), 'summary: slow\nexecute: sleep 300\n');
  const { child, out, exited } = startRun(t, base, dir, ['tests/slow']);
  await eventually('the slow task runs', () => /Executing cloud:debian-12:tests\/slow/.test(out()), 60_000);
  child.kill('SIGINT');
  await eventually('the discard script started', async () => /^\d+\n$/.test(await readFile(started, 'utf8').catch(() => '')), 30_000);
  const pid = Number(await readFile(started, 'utf8'));
  // a script left running (a broken runner) is stopped with the test: it leads its group
  let seenDead = false;
  t.teardown(() => {
    for (const target of seenDead ? [] : [-pid, pid]) {
      try {
        process.kill(target, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  });
  child.kill('SIGINT');
  t.equal(await exited, 130);
  // dead well before its sleep could end: the shell that would write `first` is gone
  await eventually('the discard script is killed', () => !isAlive(pid), 3000);
  seenDead = true;
  t.equal(await readFile(ended, 'utf8').catch(() => ''), '', 'the cut discard never ended');
  t.equal((await readdir(join(base, 'cache', 'running'))).length, 1, 'the machine is on record');
  // run --discard in-process: the discard's logic is checked, the real binary's exit is the run's above
  t.equal(await discardKeptMachines({ cwd: dir, dataRoot: join(base, 'cache'), log: new RunLog(() => undefined) }), 1, 'run --discard discarded the machine on record');
  t.equal(await readFile(ended, 'utf8'), 'second\n', 'run --discard ran the discard once');
});

t.test('REBOOT over the ssh backend: the machine goes away, comes back, the task runs again', async (t) => {
  // The sshd shares this host's kernel, so no real reboot: the reboot-command kills the
  // sshd and its connections and starts a new one after 0.5 s, and the boot identity is a
  // file it rewrites (see writeRebootScript and test/backends/reboot.test.ts).
  const { base, sshd, dir, remote } = await sshProject(t);
  const { rebootCommand, bootIdCommand } = writeRebootScript(sshd, base, 0.5);
  await writeFile(
    join(dir, 'spread.yaml'),
    [
      'project: fleet-demo',
      `path: ${remote}`,
      'backends:',
      '  lab:',
      '    type: ssh',
      `    reboot-command: ${JSON.stringify(rebootCommand)}`,
      `    boot-id-command: ${JSON.stringify(bootIdCommand)}`,
      '    hosts:',
      `      - address: 127.0.0.1:${sshd.port}`,
      `        key: ${sshd.keyPath}`,
      '    systems:',
      '      - debian-12',
      'suites:',
      '  tests/:',
      '    summary: over ssh',
      '',
    ].join('\n'),
  );
  await mkdir(join(dir, 'tests/reboot'));
  await writeFile(
    join(dir, 'tests/reboot/task.yaml'),
    [
      'summary: reboots once with a key',
      'execute: |',
      '  if [ "$SPREAD_REBOOT" = 0 ]; then',
      `    ${bootIdCommand} > boot-before`,
      '    REBOOT mykey',
      '  fi',
      '  test "$SPREAD_REBOOT" = mykey',
      `  test "$(${bootIdCommand})" != "$(cat boot-before)"`,
      '',
    ].join('\n'),
  );
  const sshdBefore = Number(await readFile(sshd.pidFile, 'utf8'));
  const { result, out } = await run(dir, ['tests/reboot'], { dataRoot: join(base, 'cache') });
  if (!result.tally.ok) t.comment(out);
  t.equal(result.tally.ok, true, 'the task passed after its reboot');
  t.equal(result.tally.successful, 1);
  t.match(out, /Rebooting on lab:debian-12 \(lab:debian-12:tests\/reboot\) as requested\.\.\.\n.*Connected after reboot to lab:debian-12 \(lab:debian-12:tests\/reboot\)\n/);
  t.not(Number(await readFile(sshd.pidFile, 'utf8')), sshdBefore, 'the machine came back with a new sshd');
});

t.test('SIGINT while a rebooted machine is waited for and its address takes connections but never answers SSH: the run stops at once', async (t) => {
  const { base, sshd, dir, remote } = await sshProject(t);
  // the "reboot" takes sshd away for good; the test then holds its port, silent, as a machine
  // whose network is up before its sshd (or whose packets are dropped)
  const { rebootCommand, bootIdCommand } = writeRebootScript(sshd, base, 'forever');
  await writeFile(
    join(dir, 'spread.yaml'),
    ['project: fleet-demo', `path: ${remote}`, 'backends:', '  lab:', '    type: ssh', `    reboot-command: ${JSON.stringify(rebootCommand)}`, `    boot-id-command: ${JSON.stringify(bootIdCommand)}`, '    hosts:', `      - address: 127.0.0.1:${sshd.port}`, `        key: ${sshd.keyPath}`, '    systems:', '      - debian-12', 'suites:', '  tests/:', '    summary: over ssh', ''].join('\n'),
  );
  await mkdir(join(dir, 'tests/reboot'));
  await writeFile(join(dir, 'tests/reboot/task.yaml'), 'summary: reboots\nkill-timeout: 5m\nexecute: |\n  if [ "$SPREAD_REBOOT" = 0 ]; then REBOOT; fi\n');
  const { child, out, exited } = startRun(t, base, dir, ['tests/reboot']);
  await eventually('the machine reboots', () => /Rebooting on lab:debian-12/.test(out()), 60_000);
  await eventually('its sshd is gone', () => !isAlive(sshd.pid), 30_000);
  const silent: Socket[] = [];
  const host = createServer((socket) => silent.push(socket));
  t.teardown(() => {
    for (const socket of silent) socket.destroy();
    host.close();
  });
  await eventually('the port is taken again', () => new Promise<boolean>((resolve) => {
    host.once('error', () => resolve(false));
    host.listen(sshd.port, '127.0.0.1', () => resolve(true));
  }), 10_000);
  await eventually('the run tries to reconnect', () => silent.length > 0, 30_000);
  const sent = Date.now();
  child.kill('SIGINT');
  const code = await Promise.race([exited, sleep(15_000, undefined, { ref: false }).then(() => 'waiting' as const)]); // unref'd: it must not hold the file's process open
  t.ok(Date.now() - sent < 5000, `the run ended ${Date.now() - sent} ms after the signal, not when the connect attempt (10 s) timed out`);
  t.equal(code, 1, 'unsuccessful run');
  t.match(out(), /Aborted tasks: 1/);
});
