// FillProgress, the part of a fill its readers see: when a fill with no reader left stops.
import t from 'tap';
import { FillProgress, UNREAD_GRACE_MS } from '../../src/cache/fill-progress.js';

/** A fill in memory whose stop, when it comes, records what a request arriving then would find. */
class Probe extends FillProgress {
  readonly done = Promise.resolve();
  stops: { joinable: boolean }[] = [];

  constructor() {
    super();
    this.streamFromMemory();
    this.resolveHead({ status: 200, headers: {}, size: 1024, verified: false, policy: undefined });
    this.remember(Buffer.alloc(16));
    this.advance(16);
  }

  protected override unread(): void {
    this.whenUnread(() => this.stops.push({ joinable: this.joinable }));
  }
}

t.test('a fill stopped for want of readers is no longer joined from the moment it is stopped', async (t) => {
  const fill = new Probe();
  t.ok(fill.joinable, 'joinable while it runs');
  await new Promise((r) => setTimeout(r, UNREAD_GRACE_MS + 200));
  // Its failure comes ticks after the stop (the body's destroy): a request joining meanwhile
  // would have a head and then a cut instead of a fill of its own.
  t.same(fill.stops, [{ joinable: false }], 'stopped once, and not joinable when stopped');
  t.notOk(fill.joinable, 'nor after');
  t.equal(fill.error, undefined, 'though its failure is yet to come');
});

t.test('a fill with a reader is not stopped; its last reader leaving starts the grace', async (t) => {
  const fill = new Probe();
  fill.acquireFile(); // the head, told with no reader, started a grace: it finds one
  await new Promise((r) => setTimeout(r, UNREAD_GRACE_MS + 200));
  t.same(fill.stops, [], 'not stopped while read');
  fill.release();
  await new Promise((r) => setTimeout(r, UNREAD_GRACE_MS + 200));
  t.equal(fill.stops.length, 1, 'stopped once its reader left');
});
