// The sweeps of a place (an ssh host, an adhoc address) whose lost script's processes may run
// on (src/backends/lost-script-sweeps.ts), at its machine's discard and again when the place
// is next taken: the run's interrupt cuts both short, the sweep on the machine as well as the
// connection to it.
import t, { type Test } from 'tap';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually } from '../helpers/wait.js';
import { isAlive } from '../helpers/processes.js';
import { leftPids, wroteLines } from '../ssh/leaving-script.js';
import { lostMidScript, relayedHost } from './relayed-host.js';

/**
 * How soon after the interrupt the allocation must have given up: a killed command's channel
 * may take the client's kill grace (5 s) to close. Far under the 30 s a sweep may run when
 * nothing cuts it (SWEEP_TIMEOUT_MS, src/ssh/client.ts), which a sweep deaf to the interrupt takes.
 */
const STOPPED_WITHIN_MS = 15_000;

for (const type of ['ssh', 'adhoc'] as const) {
  t.test(`${type}: an interrupt cuts the sweep at discard of a machine whose lost script runs on, where the machine takes the sweep and never ends it; the place stays unswept`, async (t: Test) => {
    const base = t.testdir();
    const hang = join(base, 'hang');
    const hung = join(base, 'hung');
    // a machine whose commands hang once `hang` exists (the sweep's too), their PIDs in `hung`
    const { dir, relay, p } = await relayedHost(t, type, [`ForceCommand if [ -e ${hang} ]; then echo $$ >> ${hung}; exec sleep 300; fi; eval "$SSH_ORIGINAL_COMMAND"`]);
    const { machine, left } = await lostMidScript(t, p, relay, join(dir, 'pids'));
    writeFileSync(hang, '');
    const run = new AbortController();
    const discarding = machine.discard(run.signal);
    await eventually('the sweep at discard reached the machine', () => wroteLines(hung), 20_000);
    leftPids(t, hung);
    const interrupted = Date.now();
    run.abort(); // Ctrl-C
    await discarding;
    const took = Date.now() - interrupted;
    t.ok(took < STOPPED_WITHIN_MS, `the discard ended ${took} ms after the interrupt`);
    t.ok(left.every(isAlive), 'the cut sweep killed nothing');
    // the place is on record as unswept: taken again, it is swept first
    rmSync(hang);
    const next = await p.allocate({ name: 'debian-12' });
    t.teardown(() => next.close());
    await eventually("the lost script's processes are killed before the place serves the next machine", () => !left.some(isAlive), 5000);
  });

  t.test(`${type}: an interrupt cuts the sweep again of a place whose lost script could not be stopped, where the machine takes the sweep and never ends it`, async (t: Test) => {
    const base = t.testdir();
    const hang = join(base, 'hang');
    const hung = join(base, 'hung');
    // a machine whose commands hang once `hang` exists (the sweep's too), their PIDs in `hung`
    const { dir, relay, p } = await relayedHost(t, type, [`ForceCommand if [ -e ${hang} ]; then echo $$ >> ${hung}; exec sleep 300; fi; eval "$SSH_ORIGINAL_COMMAND"`]);
    const { machine } = await lostMidScript(t, p, relay, join(dir, 'pids'));
    relay.refuse();
    await machine.discard(); // its sweep gets no answer: the place is swept again when next taken
    writeFileSync(hang, '');
    relay.accept();
    const run = new AbortController();
    const allocating = p.allocate({ name: 'debian-12' }, { signal: run.signal });
    allocating.catch(() => undefined);
    await eventually('the sweep again reached the machine', () => wroteLines(hung), 20_000);
    leftPids(t, hung);
    const interrupted = Date.now();
    run.abort(); // Ctrl-C
    await t.rejects(allocating, 'no machine is allocated');
    const took = Date.now() - interrupted;
    t.ok(took < STOPPED_WITHIN_MS, `the allocation stopped ${took} ms after the interrupt`);
  });
}
