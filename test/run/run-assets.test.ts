// A task's tooltool assets (fleetcache's `assets:` field) fetched by the agent on the machine
// before the task runs, and what the fetch warns of shown in the run's log.
import t from 'tap';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LOCAL, project, run, spreadYaml } from './project.js';

t.test('an asset already in the task directory is used; the manifest\'s likely mistakes are warned of in the log', async (t) => {
  const tool = Buffer.from('a tool\n');
  const manifest = JSON.stringify([{
    filename: 'tool.bin', size: tool.length, algorithm: 'sha512', digest: createHash('sha512').update(tool).digest('hex'), visibility: 'Public',
  }]);
  const dir = await project(t, spreadYaml('assets-warn', LOCAL), {
    's/t': 'summary: uses a tool\nassets: manifest.tt\nexecute: grep -q "a tool" tool.bin\n',
  });
  await writeFile(join(dir, 's/t/manifest.tt'), manifest);
  await writeFile(join(dir, 's/t/tool.bin'), tool);
  const { result, out } = await run(dir);
  t.equal(result.tally.ok, true, 'the task ran with its asset');
  t.match(out, /WARNING: assets of local:alpha-1:s\/t \(local:alpha-1\): \S*manifest\.tt:1: record 0: visibility "Public" is neither "public" nor "internal"/);
});
