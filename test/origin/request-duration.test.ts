// The origin's request latency, as an operator graphs it: a Prometheus histogram of each routed
// request's time, by kind of route and method, from a real origin process.
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { request } from 'undici';
import { startServerProcess } from '../helpers/processes.js';
import { lintMetricNames } from '../helpers/prom-lint.js';

const TOKEN = `request-duration-token-${randomBytes(8).toString('hex')}`;
const PAUSE_MS = 1000;

/** The value of the series `name` whose labels are `labels` and no others, in any order. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  const wanted = Object.entries({ ...labels, role: 'origin' }).map(([k, v]) => `${k}="${v}"`).sort().join(',');
  for (const line of text.split('\n')) {
    const m = /^(\w+)\{(.*)\} (\S+)$/.exec(line);
    if (m?.[1] === name && m[2]!.split(',').sort().join(',') === wanted) return Number(m[3]);
  }
  return undefined;
}

t.test('a histogram of request durations, by kind and method: a slow upload lands in its buckets', async (t) => {
  const origin = await startServerProcess(t, ['origin', '--listen', '127.0.0.1:0', '--data', t.testdir()], { FLEETCACHE_TOKEN: TOKEN });
  const body = randomBytes(64 * 1024);
  const blob = `/cas/sha256/${createHash('sha256').update(body).digest('hex')}`;
  // Half the body, a pause, the rest: the upload cannot end sooner than the pause.
  async function* paced(): AsyncGenerator<Buffer> {
    yield body.subarray(0, body.length / 2);
    await sleep(PAUSE_MS);
    yield body.subarray(body.length / 2);
  }
  const upload = await request(`${origin.url}${blob}`, { method: 'PUT', headers: { authorization: `Bearer ${TOKEN}`, 'content-length': String(body.length) }, body: Readable.from(paced()) });
  await upload.body.dump();
  t.equal(upload.statusCode, 201, 'the upload is stored');
  const get = await request(`${origin.url}${blob}`);
  await get.body.dump();
  t.equal(get.statusCode, 200, 'and read back');

  const text = await (await request(`${origin.url}/-/metrics`)).body.text();
  t.match(text, /^# TYPE fleetcache_request_duration_seconds histogram$/m, 'a histogram');
  t.same(lintMetricNames(text), [], 'named as promtool wants');
  const put = { kind: 'cas', method: 'PUT' };
  const histogram = 'fleetcache_request_duration_seconds';
  t.equal(sample(text, `${histogram}_count`, put), 1, 'one upload');
  const took = sample(text, `${histogram}_sum`, put) ?? 0;
  t.ok(took >= (PAUSE_MS - 100) / 1000, `its time counts the pause of ${PAUSE_MS} ms (${took} s)`);
  t.equal(sample(text, `${histogram}_bucket`, { ...put, le: '0.5' }), 0, 'not under half a second');
  t.equal(sample(text, `${histogram}_bucket`, { ...put, le: '+Inf' }), 1, 'in the last bucket');
  t.equal(sample(text, `${histogram}_count`, { kind: 'cas', method: 'GET' }), 1, 'the read, under its own method');
  await origin.stop();
});
