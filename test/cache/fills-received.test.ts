// What a request with only-if-cached may be given of a fill in flight (Fills.received, which
// a worker also answers other workers' such questions with): one whose whole body is here
// and that keeps it, its commit under way, answers as the stored copy will; one whose
// answer is never kept (an upstream 404) never does, not even the moment it has ended.
import t, { type Test } from 'tap';
import { request } from 'undici';
import { flightKey } from '../../src/cache/context.js';
import { casId } from '../../src/cache/disk-store.js';
import type { FillSource } from '../../src/cache/fill-progress.js';
import { parseDigest } from '../../src/store/digest.js';
import { eventually } from '../helpers/wait.js';
import { startCache } from './harness.js';
import { startUpstream } from './upstream-fixture.js';

/**
 * Starts a GET of a blob of `size` bytes that upstream answers with `status`, and waits for
 * its fill to end; returns what Fills.received gives at that moment (its cleanup, or the
 * commit of a kept body, is still under way then: it yields to the disk first).
 */
async function receivedAsItEnds(t: Test, status: number): Promise<{ ended: FillSource; received: FillSource | undefined }> {
  const { up, upUrl } = await startUpstream(t);
  const { hex, body } = up.addBlob(4 * 1024 * 1024);
  // streamed through a temp file, slowly enough to be found while it runs
  up.objects.set(`/cas/sha256/${hex}`, { body, status });
  up.options.rate = 32 * 1024 * 1024;
  const { app, url } = await startCache(t, { upstream: upUrl }, t.testdir());
  const fills = app.cache.fills;
  const key = flightKey(casId(parseDigest('sha256', hex)), { headers: {} });
  const res = await request(`${url}/cas/sha256/${hex}`);
  t.equal(res.statusCode, status, `upstream's ${status} passed on`);
  const read = res.body.dump({ limit: Infinity });
  let fill: FillSource | undefined;
  await eventually('the fill found', () => (fill = fills.get(key)) !== undefined);
  while (!fill!.ended && !fill!.error) await fill!.progress();
  const received = fills.received(key);
  await read;
  return { ended: fill!, received };
}

t.test('only-if-cached: a fill that has its whole blob and keeps it answers as the stored copy', async (t) => {
  const { ended, received } = await receivedAsItEnds(t, 200);
  t.equal(received, ended, 'given, its commit under way');
});

t.test('only-if-cached: a fill of an upstream 404 (never kept) is never given, not even once it has ended', async (t) => {
  const { ended, received } = await receivedAsItEnds(t, 404);
  t.ok(ended.ended, 'the fill ended');
  t.equal(received, undefined, 'not given');
});
