// Kept machines (-reuse, spread-spec §14) that cannot be taken back or discarded: their
// records stay on file until a discard succeeds, and the run or the discard goes on.
import t from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LOCAL, project, run, spreadYaml } from './project.js';

const reuseFile = (dir: string) => join(dir, '.fleetcache-reuse.json');
const keptAddresses = async (dir: string) => (JSON.parse(await readFile(reuseFile(dir), 'utf8')) as { machines: Array<{ address: string }> }).machines.map((m) => m.address);

t.test('-reuse: a kept machine that cannot be taken back stays on record, and a new one is allocated', async (t) => {
  const dir = await project(t, spreadYaml('gone', LOCAL));
  // a local machine whose directory cannot be made: its reuse fails
  const gone = { backend: 'local', system: 'alpha-1', address: '/dev/null/gone', data: '/dev/null/gone' };
  await writeFile(reuseFile(dir), JSON.stringify({ machines: [gone] }));
  const { result, out } = await run(dir, [], { reuse: true });
  t.match(out, /Cannot reuse local:alpha-1 at \/dev\/null\/gone: /);
  t.match(out, /Allocating local:alpha-1\.\.\./);
  t.equal(result.tally.successful, 1, 'the job ran on the new machine');
  const kept = await keptAddresses(dir);
  t.ok(kept.includes('/dev/null/gone'), 'the record of the machine not taken back is kept for a later discard');
  t.equal(kept.length, 2, 'beside the new machine, kept by -reuse');
});
