// RemoteFill against a leader's socket that answers as a worker does in the races that
// the two-worker test cannot time: the fill already ended (404), the leader's disk
// refused it, upstream failed, the leader went away mid-fill; and only-if-cached's search
// of the other workers (Fills.findReceived) when one of them is stuck. The whole path with
// two real workers is in workers.test.ts.
import { mkdtempSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { UpstreamError } from '../../src/errors.js';
import { DiskStore, httpId, StorageError } from '../../src/cache/disk-store.js';
import { Fills } from '../../src/cache/fills.js';
import { closeFollowerPools, FillFileGoneError, FillGoneError, RemoteFill } from '../../src/cache/remote-fill.js';
import { FillCursor } from '../../src/cache/fill-cursor.js';
import type { TempFile } from '../../src/cache/fill.js';
import type { FillSource } from '../../src/cache/fill-progress.js';
import { eventually, failIfSlower } from '../helpers/wait.js';

async function leader(t: Test, answer: (res: http.ServerResponse) => void): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'fleetcache-remote-fill-'));
  const socket = path.join(dir, 'w.sock');
  const server = http.createServer((_req, res) => answer(res));
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  t.teardown(async () => {
    await closeFollowerPools();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });
  return socket;
}

/** The rejection of `p` (tap compares error classes by name; these match by instanceof). */
const rejection = (p: Promise<unknown>): Promise<unknown> => p.then(() => undefined, (err: unknown) => err);

const head = { status: 200, headers: { 'content-type': 'application/octet-stream' }, size: 8 };

/** How a leader names the temp file `file` it writes (Fill.tempFile). */
const tempFile = (file: string): TempFile => ({ path: file, ino: statSync(file).ino });

t.test('a fill that ended before it was followed: FillGoneError', async (t) => {
  const socket = await leader(t, (res) => res.writeHead(404).end('{}'));
  const fill = new RemoteFill(socket, 'k');
  t.ok((await rejection(fill.head)) instanceof FillGoneError);
  await fill.done;
});

t.test("the leader's disk refused the fill: StorageError (followers pass through, as the leader does)", async (t) => {
  const socket = await leader(t, (res) => res.writeHead(200).end(JSON.stringify({ error: 'no space', storage: true }) + '\n'));
  t.ok((await rejection(new RemoteFill(socket, 'k').head)) instanceof StorageError);
});

t.test('upstream failed: UpstreamError', async (t) => {
  const socket = await leader(t, (res) => res.writeHead(200).end(JSON.stringify({ error: 'upstream origin: HTTP 502' }) + '\n'));
  t.ok((await rejection(new RemoteFill(socket, 'k').head)) instanceof UpstreamError);
});

t.test('the leader goes away mid-fill: readers are cut, never given a clean end', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'fill');
  writeFileSync(file, 'abcdefgh');
  // The leader goes away once the reader has taken what it may: a timer of 100 ms fired first
  // on a loaded machine (the fill failed before anything was read). 5 s if it never takes
  // anything: a reader that waits for bytes it was told of fails then, instead of hanging.
  let goAway = (): void => undefined;
  const socket = await leader(t, (res) => {
    res.writeHead(200);
    res.write(JSON.stringify({ head, file: tempFile(file) }) + '\n' + JSON.stringify({ w: 4 }) + '\n');
    goAway = () => res.socket?.destroy();
    setTimeout(goAway, 5000).unref();
  });
  const fill = new RemoteFill(socket, 'k');
  t.same(await fill.head, head);
  const chunks: Buffer[] = [];
  const fh = fill.acquireFile();
  t.ok(fh, 'a large fill is read from its file');
  const cursor = new FillCursor(fill, fh, 0, Infinity);
  const scratch = Buffer.alloc(16);
  const err = await rejection((async () => {
    for (let c; (c = await cursor.next(() => scratch));) {
      chunks.push(Buffer.from(c));
      goAway();
    }
  })());
  fill.release();
  t.ok(err instanceof UpstreamError, 'the reader fails');
  t.equal(Buffer.concat(chunks).toString(), 'abc', 'the bytes written so far, but the last one held back');
});

t.test('the path the leader named is another file by the time it is opened (the fill committed, its key claimed anew): FillFileGoneError, never that file\'s bytes', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, '.tmp-fill-k');
  writeFileSync(file, 'abcdefgh');
  const named = tempFile(file);
  renameSync(file, path.join(dir, 'entry')); // committed
  writeFileSync(file, 'ABCDEFGH'); // the next fill's claim
  const socket = await leader(t, (res) => res.writeHead(200).end([{ following: true }, { head, file: named }, { end: 8 }].map((e) => JSON.stringify(e) + '\n').join('')));
  const fill = new RemoteFill(socket, 'k');
  t.ok((await rejection(fill.head)) instanceof FillFileGoneError, 'not followed');
  await fill.done;
});

t.test('a small fill: the body comes with the end', async (t) => {
  const socket = await leader(t, (res) => {
    res.writeHead(200).end([{ head, file: null }, { end: 8, body: Buffer.from('abcdefgh').toString('base64') }].map((e) => JSON.stringify(e) + '\n').join(''));
  });
  const fill = new RemoteFill(socket, 'k');
  await fill.head;
  t.equal(fill.acquireFile(), undefined, 'no file');
  t.equal((await fill.wholeBody())?.toString(), 'abcdefgh');
});

/** A worker that takes the question and never answers (stopped, wedged): its question times out after 5 s. `unanswered()`: the questions it holds. */
async function stuckWorker(t: Test): Promise<{ socket: string; unanswered: () => number }> {
  let unanswered = 0;
  const socket = await leader(t, (res) => {
    unanswered++;
    res.once('close', () => unanswered--);
  });
  return { socket, unanswered: () => unanswered };
}

/**
 * Fills.findReceived of a process whose peers are `peers`, the key claimed (by a fill of
 * another worker's: else nobody is asked), which must end well within the 2 s push's probe
 * gives a cache (cache-holdings.ts).
 */
async function findReceived(t: Test, peers: string[]): Promise<FillSource | undefined> {
  const log = pino({ level: 'silent' });
  const store = new DiskStore(t.testdir(), 1024 ** 2, log);
  const id = httpId('k');
  const claim = store.claimFill(id, 'k');
  t.teardown(() => claim && store.dropClaim(claim));
  const fills = new Fills(store, log, peers);
  return failIfSlower(t, 'the search', 2000, () => fills.findReceived('k', id));
}

const events = (list: object[]): string => list.map((e) => JSON.stringify(e) + '\n').join('');

t.test('only-if-cached: the worker whose fill is whole is followed at once, a stuck one not waited for', async (t) => {
  const body = Buffer.from('abcdefgh');
  const whole = await leader(t, (res) => res.writeHead(200).end(events([{ following: true }, { head, file: null }, { end: 8, body: body.toString('base64') }])));
  const stuck = await stuckWorker(t);
  const found = await findReceived(t, [stuck.socket, whole]);
  t.equal((await found?.wholeBody())?.toString(), 'abcdefgh', 'the whole fill is followed');
  await eventually('the stuck worker\'s question dropped', () => stuck.unanswered() === 0, 2000);
});

t.test('only-if-cached: the worker whose whole fill was committed as it answered ends the search at once (the caller looks on disk again)', async (t) => {
  const dir = t.testdir();
  // its file renamed into place (the entry) before the follower opened it
  const committed = await leader(t, (res) => res.writeHead(200).end(events([{ following: true }, { head, file: { path: path.join(dir, 'renamed-since'), ino: 1 } }, { end: 8 }])));
  const stuck = await stuckWorker(t);
  t.equal(await findReceived(t, [stuck.socket, committed]), undefined, 'nothing to follow');
  await eventually('the stuck worker\'s question dropped', () => stuck.unanswered() === 0, 2000);
});
