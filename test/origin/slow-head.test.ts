// The origin lets go of a connection whose request head does not arrive whole within
// limits.clientHeaderTimeout (a silent one, a head sent a byte at a time, a kept-alive one's
// next head), but not of a body that takes longer; limits.maxConnections closes a connection
// over it as it comes.
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { originOptionsFrom } from '../../src/cli/origin.js';
import { parseConfig } from '../../src/config/load.js';
import { OriginConfigSchema, type OriginOptions } from '../../src/origin/config.js';
import { startOrigin, TEST_TOKEN, uploadBlob } from '../helpers/origin.js';
import { dribbleHead, getOn, idleBetween, openMany, silent, slowGet, slowPut } from '../helpers/slow-client.js';

const LIMIT_MS = 1000;
/** node looks for late heads every second: a cut comes within that after the limit, plus slack for a loaded machine. */
const LATEST_MS = LIMIT_MS + 2000;

/** The connection limits the CLI gives an origin whose configuration file has these `limits:` lines. */
function withLimits(t: Test, limits: string): Pick<OriginOptions, 'clientHeaderTimeoutMs' | 'maxConnections'> {
  const dir = t.testdir({ token: `${TEST_TOKEN}\n` });
  const config = parseConfig(OriginConfigSchema, `limits:\n${limits}`, 'origin.yaml');
  const { options } = originOptionsFrom(config, { data: join(dir, 'data'), tokenFile: join(dir, 'token') });
  return { clientHeaderTimeoutMs: options.clientHeaderTimeoutMs!, ...(options.maxConnections === undefined ? {} : { maxConnections: options.maxConnections }) };
}

t.test('a late request head is cut, a slow body is not', async (t) => {
  const origin = await startOrigin(t, withLimits(t, '  clientHeaderTimeout: 1s\n'));
  const blob = Buffer.alloc(32 * 1024 * 1024, 7);
  const hex = await uploadBlob(origin.url, blob);

  // all at once, to keep the file short; each checked in its own subtest
  const slowUpload = Buffer.from('slow body, one byte at a time');
  const endings = {
    silent: silent(origin.url),
    dribbled: dribbleHead(origin.url),
    silentThenDribbled: dribbleHead(origin.url, { silentMs: 900 }),
    keptAlive: dribbleHead(origin.url, { before: 'GET /-/healthz HTTP/1.1\r\nHost: {host}\r\n\r\n' }),
    idleAfterAnswer: idleBetween(origin.url, '/-/healthz', LIMIT_MS + 500),
    upload: slowPut(origin.url, origin.token, slowUpload, 2500),
    download: slowGet(`${origin.url}/cas/sha256/${hex}`, 2500),
  };

  t.test('a connection that sends nothing', async (t) => {
    const { ms } = await endings.silent;
    t.ok(ms >= LIMIT_MS - 100 && ms <= LATEST_MS, `closed after ${ms} ms`);
  });
  t.test('a head sent a byte at a time', async (t) => {
    const { ms, answer } = await endings.dribbled;
    t.ok(ms >= LIMIT_MS - 100 && ms <= LATEST_MS, `closed after ${ms} ms`);
    t.match(answer, /^HTTP\/1\.1 408 .*FC_ERR_REQUEST_TIMEOUT/s, 'answered 408');
  });
  t.test('silent, then a head a byte at a time: the limit counts from the connection', async (t) => {
    const { ms } = await endings.silentThenDribbled;
    // node alone counts from the head's first byte: 1.9 s at the least
    t.ok(ms <= LIMIT_MS + 600, `closed after ${ms} ms`);
  });
  t.test('the next head on a kept-alive connection', async (t) => {
    const { ms, answer } = await endings.keptAlive;
    t.ok(ms <= LATEST_MS, `closed ${ms} ms after its first byte`);
    t.match(answer, /HTTP\/1\.1 408 /, 'answered 408');
  });
  t.test('a kept-alive connection idle past the limit after its first answer (no head in progress)', async (t) => {
    t.equal(await endings.idleAfterAnswer, 200, 'its next request is served');
  });
  t.test('an upload whose body takes longer than the limit', async (t) => {
    t.match((await endings.upload).answer, /^HTTP\/1\.1 201 /, 'stored');
  });
  t.test('a download read more slowly than the limit', async (t) => {
    t.equal(await endings.download, hex, 'whole');
  });
});

t.test('limits.maxConnections: a connection over it is closed as it comes', async (t) => {
  const limits = withLimits(t, '  maxConnections: 2\n');
  t.equal(limits.clientHeaderTimeoutMs, 15_000, 'the head limit: 15 s by default');
  const origin = await startOrigin(t, limits);
  const { closed, open: kept } = await openMany(origin.url, 3);
  t.equal(closed, 1, 'the third closed');
  t.equal(kept.length, 2);
  t.equal(await getOn(kept[0]!, origin.url, '/-/healthz'), 200, 'the ones within it are served');
  kept[1]!.destroy();
  await new Promise((resolve) => setTimeout(resolve, 100));
  const again = await openMany(origin.url, 1);
  t.equal(again.closed, 0, 'one closed makes room');
  t.equal(await getOn(again.open[0]!, origin.url, '/-/healthz'), 200);
  for (const s of [...kept, ...again.open]) s.destroy();
});
