// fleetcache_retention_last_prune_timestamp_seconds is what an operator alerts on ("older than a
// few intervals"): a restarted origin must not show 0 until its first prune, which comes a
// minute to ten after the start, or every deploy would fire that alert.
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { startServerProcess } from '../helpers/processes.js';

const TOKEN = `last-prune-token-${randomBytes(8).toString('hex')}`;
const GAUGE = 'fleetcache_retention_last_prune_timestamp_seconds{role="origin"}';

async function lastPrune(url: string): Promise<number | undefined> {
  const text = await (await request(`${url}/-/metrics`)).body.text();
  const line = text.split('\n').find((l) => l.startsWith(`${GAUGE} `));
  return line === undefined ? undefined : Number(line.slice(GAUGE.length + 1));
}

t.test('the time of the last prune survives a restart', async (t) => {
  const dir = t.testdir();
  const config = path.join(dir, 'origin.yaml');
  // interval 0s: prunes only when asked, so that none runs by itself after the restart
  writeFileSync(config, 'retention:\n  maxAge: 30d\n  interval: 0s\n');
  const data = path.join(dir, 'data');
  const args = ['origin', '--config', config, '--listen', '127.0.0.1:0', '--data', data];
  const first = await startServerProcess(t, args, { FLEETCACHE_TOKEN: TOKEN });
  t.equal(await lastPrune(first.url), 0, 'no prune yet');
  const before = Date.now() / 1000;
  const res = await request(`${first.url}/-/prune`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
  await res.body.dump();
  t.equal(res.statusCode, 200, 'a prune runs');
  const pruned = await lastPrune(first.url);
  t.ok(pruned !== undefined && pruned >= before, `its time is set (${pruned})`);
  await first.stop();

  const second = await startServerProcess(t, args, { FLEETCACHE_TOKEN: TOKEN });
  t.equal(await lastPrune(second.url), pruned, 'the restarted origin shows the same time, not 0');
  await second.stop();
});

t.test('a damaged record of the last prune is said, naming its file, and read as no prune', async (t) => {
  const dir = t.testdir();
  const config = path.join(dir, 'origin.yaml');
  writeFileSync(config, 'retention:\n  maxAge: 30d\n  interval: 0s\n');
  const data = path.join(dir, 'data');
  const record = path.join(data, 'names.v1', '_retention', 'last-prune.rec.json');
  mkdirSync(path.dirname(record), { recursive: true });
  for (const damaged of ['{"at":"yesterday"}', '{"at": 17']) {
    writeFileSync(record, damaged);
    const origin = await startServerProcess(t, ['origin', '--config', config, '--listen', '127.0.0.1:0', '--data', data], { FLEETCACHE_TOKEN: TOKEN, FLEETCACHE_LOG_LEVEL: 'warn' });
    t.equal(await lastPrune(origin.url), 0, `${damaged}: no time taken from it`);
    t.ok(origin.stderr().includes(record), `${damaged}: the warning names ${record}`);
    await origin.stop();
  }
});
