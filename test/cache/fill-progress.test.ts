// FillProgress, the part of a fill its readers see: when a fill with no reader left stops.
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { FillProgress } from '../../src/cache/fill-progress.js';
import { eventually } from '../helpers/wait.js';

/** The grace of these fills: UNREAD_GRACE_MS lowered, as the grace is all that is under test. */
const GRACE_MS = 100;

/** A fill in memory whose stop, when it comes, records what a request arriving then would find. */
class Probe extends FillProgress {
  readonly done = Promise.resolve();
  stops: { joinable: boolean }[] = [];
  /** performance.now() when the last grace started (the fill told it has no reader). */
  graceStarted = 0;
  /** performance.now() of the last stop. */
  stoppedAt = 0;

  constructor() {
    super(GRACE_MS);
    this.streamFromMemory();
    this.resolveHead({ status: 200, headers: {}, size: 1024, verified: false, policy: undefined, askedAt: Date.now() });
    this.remember(Buffer.alloc(16));
    this.advance(16);
  }

  protected override unread(): void {
    this.graceStarted = performance.now();
    this.whenUnread(() => {
      this.stoppedAt = performance.now();
      this.stops.push({ joinable: this.joinable });
    });
  }
}

t.test('a fill stopped for want of readers is no longer joined from the moment it is stopped', async (t) => {
  const fill = new Probe();
  t.ok(fill.joinable, 'joinable while it runs');
  await eventually('the fill with no reader stops', () => fill.stops.length > 0, 5000);
  t.ok(fill.stoppedAt - fill.graceStarted >= GRACE_MS - 1, 'not before its grace');
  // Its failure comes ticks after the stop (the body's destroy): a request joining meanwhile
  // would have a head and then a cut instead of a fill of its own.
  t.same(fill.stops, [{ joinable: false }], 'stopped once, and not joinable when stopped');
  t.notOk(fill.joinable, 'nor after');
  t.equal(fill.error, undefined, 'though its failure is yet to come');
});

t.test('a fill with a reader is not stopped; its last reader leaving starts the grace', async (t) => {
  const fill = new Probe();
  fill.acquireFile(); // the head, told with no reader, started a grace: it finds one
  await sleep(GRACE_MS * 3);
  t.same(fill.stops, [], 'not stopped while read');
  fill.release();
  await eventually('the fill stops once its reader left', () => fill.stops.length > 0, 5000);
  t.ok(fill.stoppedAt - fill.graceStarted >= GRACE_MS - 1, 'a grace after its reader left');
  t.equal(fill.stops.length, 1, 'stopped once');
});
