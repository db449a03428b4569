import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { DispatchGate, LoadGate, runWorkers } from '../../src/run/driver.js';
import { JobQueue, workerPlan, type SchedJob } from '../../src/run/scheduler.js';
import { createProvider } from '../../src/backends/registry.js';
import { NoMachineLeft, type Machine } from '../../src/backends/backend.js';

/**
 * Whether `promise` settles within `ms`. The timer is cleared once it does: a bare sleep in a
 * race ran on after it, holding the test process open for its whole length (15 s after the
 * last test had ended).
 */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const bound = new AbortController();
  try {
    return await Promise.race([promise.then(() => true), sleep(ms, false, { signal: bound.signal })]);
  } finally {
    bound.abort();
  }
}

function jobs(systems: string[], perSystem: number): SchedJob[] {
  return systems.flatMap((system) =>
    Array.from({ length: perSystem }, (_, i) => ({ name: `b:${system}:s/t${i}`, backend: 'b', system, suite: 's/', task: `s/t${i}`, variant: '', sample: 1 })),
  );
}

t.test('dispatch gate: at most N in start-up, spaced by the delay', async (t) => {
  const gate = new DispatchGate(2, 50);
  let active = 0;
  let peak = 0;
  const entered: number[] = [];
  const started = Date.now();
  await Promise.all(
    Array.from({ length: 5 }, async () => {
      const release = await gate.enter('host');
      entered.push(Date.now() - started);
      peak = Math.max(peak, ++active);
      await sleep(120);
      active--;
      release();
    }),
  );
  t.equal(peak, 2, 'never more than two in start-up');
  entered.sort((a, b) => a - b);
  // Measured from the start, not between neighbours: a test process held off the CPU for a
  // few ms between the first grant and its timestamp must not look like a short gap. A timer
  // may fire up to a millisecond early.
  for (let i = 1; i < entered.length; i++) t.ok(entered[i]! >= i * 50 - 2, `dispatch ${i} waited the delay (${entered[i]} ms from the start)`);
  const other = Date.now();
  (await gate.enter('other-host'))();
  t.ok(Date.now() - other < 40, 'another executor is not held back');
});

t.test('load gate: waits while loaded, wakes on a finished job without spinning', async (t) => {
  const gate = new LoadGate(1.5, { initial: 10_000, max: 10_000 });
  let load = 4;
  let polls = 0;
  const admitted = gate.admit('h', async () => (polls++, load));
  await sleep(100);
  t.equal(polls, 1, 'no busy loop while the load is high');
  load = 0.5;
  const at = Date.now();
  gate.jobFinished('h');
  await admitted;
  t.ok(Date.now() - at < 1000, 'woken by the event, not the 10 s timer');
  t.equal(polls, 2);
  const gate2 = new LoadGate(1, { initial: 20, max: 40 });
  let calls = 0;
  await gate2.admit('h', async () => (++calls < 4 ? 9 : 0));
  t.equal(calls, 4, 'timer polls with backoff until the load drops');
});

t.test('load gate: a finished job wakes the worker waiting longest, one, not every waiting one', async (t) => {
  const gate = new LoadGate(1, { initial: 10_000, max: 10_000 });
  let load = 5;
  const reads: number[] = [];
  const admitted = [0, 1, 2].map((w) => gate.admit('h', async () => (reads.push(w), load)));
  await sleep(50);
  t.same(reads, [0, 1, 2], 'each looked once and waits');
  gate.jobFinished('h');
  await sleep(50);
  t.same(reads, [0, 1, 2, 0], 'one finished job: the first waiting looks again, alone');
  load = 0;
  gate.jobFinished('h');
  gate.jobFinished('h');
  gate.jobFinished('h'); // more than are waiting: nothing to wake
  await Promise.all(admitted);
  t.same(reads.slice(4).sort(), [0, 1, 2], 'then each in turn, and all are admitted');
});

t.test('runWorkers over local machines: every job once, storm limit, load admission', async (t) => {
  const dir = t.testdir();
  const provider = await createProvider('b', 'local', {}, { projectRoot: dir, remotePath: '/p', password: 'x', stateDir: dir });
  const all = jobs(['x', 'y'], 6);
  const q = new JobQueue(all, { seed: 9n });
  const plan = workerPlan(all, () => 3);
  let starting = 0;
  let peakStarting = 0;
  const ran: string[] = [];
  const loadReads = new Map<string, number>();
  const waits: Array<{ worker: number; load: number; threshold: number }> = [];
  const res = await runWorkers<Machine>(
    q,
    plan,
    {
      async start(w) {
        peakStarting = Math.max(peakStarting, ++starting);
        const m = await provider.allocate({ name: w.system });
        await sleep(30);
        starting--;
        return m;
      },
      async run(m, job) {
        // long enough that the first machines cannot take every job before the last two have
        // started (a low load reading admits a machine's next jobs unread for a second)
        const r = await m.exec(`sleep 0.3; echo ${job.task} >> ran.txt`, { trace: false });
        ran.push(job.name);
        return r.exitCode === 0;
      },
      async stop(m) {
        await m.discard();
      },
      async load(m) {
        // The first read of each machine reports a high load: admission must wait.
        const n = (loadReads.get(m.address) ?? 0) + 1;
        loadReads.set(m.address, n);
        if (n === 1) return 5000;
        const r = await m.exec('cut -d" " -f1 /proc/loadavg', { trace: false });
        return Number(r.output) > 1000 ? 1000 : 0;
      },
    },
    {
      startupLimit: 2,
      dispatchDelay: 5,
      loadThreshold: 1000,
      loadPoll: { initial: 20, max: 100 },
      onLoadWait: (w, load, threshold) => waits.push({ worker: w.id, load, threshold }),
    },
  );
  t.same(res.failures, []);
  // each machine's first admission waited (one high read, then polls): said once, with the figures
  t.same(waits.map((w) => [w.load, w.threshold]), Array.from({ length: 6 }, () => [5000, 1000]), 'every wait reported once, with load and threshold');
  t.equal(new Set(waits.map((w) => w.worker)).size, 6, 'one report per machine');
  t.same(res.remaining, []);
  t.same([...ran].sort(), all.map((j) => j.name).sort(), 'every job ran exactly once');
  t.equal(peakStarting, 2, 'start-up limited per executor');
  t.equal(loadReads.size, 6, 'each machine was checked');
  for (const n of loadReads.values()) t.ok(n >= 2, 'admission re-polled after a high load');
});

t.test('load admission: a low reading admits the machine\'s jobs of the next second without another read', async (t) => {
  const all = jobs(['x'], 5);
  const reads: number[] = [];
  const started = Date.now();
  let ran = 0;
  const res = await runWorkers<number>(
    new JobQueue(all, { seed: 1n }),
    [{ backend: 'b', system: 'x', count: 1 }],
    {
      start: async () => 0,
      // the first job outlasts the reading: the next is admitted by a fresh one, which admits the rest
      run: async () => {
        if (ran++ === 0) await sleep(1100);
        return true;
      },
      stop: async () => undefined,
      load: async () => (reads.push(Date.now() - started), 0),
    },
    { dispatchDelay: 0, loadThreshold: 10 },
  );
  t.same(res.failures, []);
  t.equal(reads.length, 2, `one read for the jobs of the first second, one after it (reads at ${reads.join(', ')} ms)`);
});

t.test('machines waiting for their load to drop stop waiting once their system has no job left: the run ends', async (t) => {
  const dir = t.testdir();
  const provider = await createProvider('b', 'local', {}, { projectRoot: dir, remotePath: '/p', password: 'x', stateDir: dir });
  const all = jobs(['x'], 3);
  const q = new JobQueue(all, { seed: 3n });
  const ran: string[] = [];
  const waited: number[] = [];
  const stopped: number[] = [];
  // the poll is slow: only being told that the jobs are gone ends the wait in time
  const poll = { initial: 60_000, max: 60_000 };
  const done = runWorkers<{ machine: Machine; index: number }>(
    q,
    [{ backend: 'b', system: 'x', count: 3 }],
    {
      start: async (w) => ({ machine: await provider.allocate({ name: w.system }), index: w.index }),
      async run(m, job) {
        const r = await m.machine.exec(`echo ${job.task} >> ran.txt`, { trace: false });
        ran.push(job.name);
        return r.exitCode === 0;
      },
      async stop(m) {
        stopped.push(m.index);
        await m.machine.discard();
      },
      // machines #0 and #1 are busy for good (other tenants of their hosts); #2 is free
      load: async (m) => (m.index < 2 ? 50 : 0),
    },
    { dispatchDelay: 0, loadThreshold: 10, loadPoll: poll, onLoadWait: (w) => waited.push(w.index) },
  );
  const ended = await settlesWithin(done, 10_000);
  t.ok(ended, 'the run ended');
  t.same([...waited].sort(), [0, 1], 'the busy machines waited');
  t.same([...ran].sort(), all.map((j) => j.name).sort(), 'the free machine ran every job');
  t.same([...stopped].sort(), [0, 1, 2], 'every machine was stopped');
});

t.test('a machine whose load was being read when its system\'s last job was taken stops waiting then, not once that job ends', async (t) => {
  const dir = t.testdir();
  const provider = await createProvider('b', 'local', {}, { projectRoot: dir, remotePath: '/p', password: 'x', stateDir: dir });
  const q = new JobQueue(jobs(['x'], 1), { seed: 1n });
  const stopped: number[] = [];
  let secondStopped!: () => void;
  const secondStops = new Promise<void>((resolve) => (secondStopped = resolve));
  let readingSecond!: () => void;
  const secondRead = new Promise<void>((resolve) => (readingSecond = resolve));
  let takeJob!: () => void;
  const jobTaken = new Promise<void>((resolve) => (takeJob = resolve));
  let stoppedWhileTheJobRan: boolean | undefined;
  const done = runWorkers<{ machine: Machine; index: number }>(
    q,
    [{ backend: 'b', system: 'x', count: 2 }],
    {
      start: async (w) => ({ machine: await provider.allocate({ name: w.system }), index: w.index }),
      async run() {
        takeJob();
        // a long last job: the waiting machine has nothing left to wait for meanwhile
        stoppedWhileTheJobRan = await settlesWithin(secondStops, 5000);
        return true;
      },
      async stop(m) {
        stopped.push(m.index);
        if (m.index === 1) secondStopped();
        await m.machine.discard();
      },
      // #1's read is in flight (a slow ssh round trip) when #0, admitted, takes the last job; it reads high
      async load(m) {
        if (m.index === 0) {
          await secondRead;
          return 0;
        }
        readingSecond();
        await jobTaken;
        return 50;
      },
    },
    { dispatchDelay: 0, loadThreshold: 10, loadPoll: { initial: 60_000, max: 60_000 } },
  );
  const ended = await settlesWithin(done, 15_000);
  t.ok(ended, 'the run ended');
  t.equal(stoppedWhileTheJobRan, true, 'the waiting machine stopped while the last job ran');
  t.same([...stopped].sort(), [0, 1], 'every machine was stopped');
});

t.test('a broken machine stops its worker; start failures leave jobs to others', async (t) => {
  const all = jobs(['x'], 6);
  const q = new JobQueue(all, { seed: 1n });
  const ran: string[] = [];
  const res = await runWorkers<number>(
    q,
    [{ backend: 'b', system: 'x', count: 3 }],
    {
      async start(w) {
        if (w.index === 0) throw new Error('allocation failed');
        return w.index;
      },
      async run(m, job) {
        ran.push(`${m}:${job.name}`);
        await sleep(5);
        if (m === 1) throw new Error('connection lost'); // machine 1 is lost after its first job
        return true;
      },
      async stop(m) {
        if (m === 2) throw new Error('discard failed');
      },
    },
    { dispatchDelay: 0 },
  );
  t.equal(res.failures.length, 3);
  t.match(res.failures[0], { phase: 'start', worker: { index: 0 } });
  t.match(String(res.failures[0]!.error), /allocation failed/);
  t.match(res.failures[1], { phase: 'run', worker: { index: 1 } });
  t.equal(res.failures[1]!.job?.name, ran.find((r) => r.startsWith('1:'))!.slice(2), 'the failure names the job that was running (neither done nor pending)');
  t.match(res.failures[2], { phase: 'stop', worker: { index: 2 } });
  t.equal(ran.filter((r) => r.startsWith('1:')).length, 1, 'the broken worker took one job');
  t.equal(ran.length, 6, 'the healthy worker took the rest');
  t.same(res.remaining, []);
});

t.test('abort: workers stop taking jobs and the rest is reported', async (t) => {
  const all = jobs(['x'], 10);
  const q = new JobQueue(all, { seed: 1n });
  const ac = new AbortController();
  let n = 0;
  const res = await runWorkers<number>(
    q,
    [{ backend: 'b', system: 'x', count: 1 }],
    {
      start: async () => 1,
      run: async () => (++n === 3 && ac.abort(), true),
      stop: async () => {},
    },
    { signal: ac.signal, dispatchDelay: 0 },
  );
  t.equal(n, 3);
  t.equal(res.remaining.length, 7);
});

t.test('a start that waits through idle (a retry delay, a busy host) does not hold its start-up slot', async (t) => {
  const all = jobs(['failing', 'fine'], 2);
  const q = new JobQueue(all, { seed: 1n });
  const plan = workerPlan(all, (_backend, system) => (system === 'failing' ? 2 : 1));
  const began = Date.now();
  const startedAt = new Map<string, number>();
  const res = await runWorkers<number>(
    q,
    plan,
    {
      async start(w, _signal, idle) {
        // an allocation that fails and is retried five times, 100 ms apart
        if (w.system === 'failing') for (let i = 0; i < 5; i++) await idle(() => sleep(100));
        startedAt.set(`${w.system}#${w.index}`, Date.now() - began);
        return w.id;
      },
      async run(_machine, job) {
        // the first failing machine up must not take both jobs before the other is up (it would give up then)
        if (job.system === 'failing') await sleep(300);
        return true;
      },
      async stop() {},
    },
    { startupLimit: 1, dispatchDelay: 0 },
  );
  t.same(res.failures, []);
  const fine = startedAt.get('fine#0')!;
  t.ok(fine < 300, `the other system started at ${fine} ms, not after the retries (500 ms and more)`);
  t.ok([...startedAt].filter(([k]) => k.startsWith('failing')).every(([, at]) => at >= 500), `the retries still ran (${JSON.stringify([...startedAt])})`);
});

t.test('a start waiting through idle gives up (NoMachineLeft) once the other machines took every job of its system', async (t) => {
  const all = jobs(['x'], 3);
  const q = new JobQueue(all, { seed: 1n });
  let retries = 0;
  const ran: string[] = [];
  const began = Date.now();
  const res = await runWorkers<number>(
    q,
    workerPlan(all, () => 2),
    {
      async start(w, _signal, idle) {
        // worker #1's allocation is refused, and retried every 20 ms for as long as it is let (4 s at most)
        if (w.index === 1) for (let i = 0; i < 200; i++) await idle(() => (retries++, sleep(20)));
        return w.id;
      },
      async run(_machine, job) {
        ran.push(job.name);
        await sleep(100);
        return true;
      },
      async stop() {},
    },
    { dispatchDelay: 0 },
  );
  const took = Date.now() - began;
  t.same(ran.sort(), all.map((j) => j.name).sort(), 'the machine that started ran every job');
  t.equal(res.failures.length, 1);
  t.ok(res.failures[0]!.error instanceof NoMachineLeft, 'the retrying start gave up as a worker that gets no machine');
  t.match(res.failures[0]!.error, { message: 'the jobs of b:x were all taken by the other machines' });
  // the last job was taken at about 200 ms: a few retries more, not retries for ever
  t.ok(took < 2000, `the run ended with its jobs (${took} ms)`);
  t.ok(retries < 50, `the retries stopped with the last job taken (${retries})`);
});

t.test('start-up takes the first machine of every system, then the second of each: no system waits for all of another\'s', async (t) => {
  const all = jobs(['x', 'y', 'z'], 6);
  const q = new JobQueue(all, { seed: 2n });
  const plan = workerPlan(all, () => 3);
  const started: string[] = [];
  // every job holds its machine until all nine have started (bounded), so none finds its system's jobs gone
  let allStarted!: () => void;
  const starts = new Promise<void>((resolve) => (allStarted = resolve));
  const res = await runWorkers<number>(
    q,
    plan,
    {
      async start(w) {
        started.push(`${w.system}#${w.index}`);
        if (started.length === 9) allStarted();
        return w.id;
      },
      async run() {
        await Promise.race([starts, sleep(10_000, undefined, { ref: false })]);
        return true;
      },
      async stop() {},
    },
    { startupLimit: 1, dispatchDelay: 0 },
  );
  t.same(res.failures, []);
  t.same(res.remaining, []);
  t.same(started, ['x#0', 'y#0', 'z#0', 'x#1', 'y#1', 'z#1', 'x#2', 'y#2', 'z#2'], 'one machine of each system in turn');
});
