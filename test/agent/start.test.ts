// The agent starts for every job that declares assets or artifacts, on every machine: a
// command evaluates only its own code. `version` (as a usage error would) loads none of
// what the transfers need: the HTTP client (undici) and, with it, Node's http, tls and dns.
import t from 'tap';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { installAgent } from './helpers.js';

const BUILTINS = 'fleetcache-test-builtins ';
const TRANSFER_BUILTINS = ['http', 'https', 'tls', 'dns'];

t.test('the agent answers version without loading the transfer code', async (t) => {
  const agent = await installAgent(t);
  const logger = join(t.testdir(), 'log-builtins.mjs');
  writeFileSync(logger, `process.on('exit', () => process._rawDebug(${JSON.stringify(BUILTINS)} + process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice('NativeModule '.length)).join(' ')));\n`);
  const { stdout, stderr } = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
    execFile(process.execPath, ['--import', logger, agent, 'version', '--json-args', '{}'], { timeout: 30_000 }, (err, stdout, stderr) => (err ? reject(err) : resolve({ stdout, stderr })));
  });
  t.match(JSON.parse(stdout) as object, { ok: true, version: String });
  const line = stderr.split('\n').find((l) => l.startsWith(BUILTINS));
  t.ok(line, 'the builtins were logged');
  const loaded = new Set(line!.slice(BUILTINS.length).split(' '));
  t.ok(loaded.has('fs'), 'the list holds what any start loads');
  t.same(TRANSFER_BUILTINS.filter((name) => loaded.has(name)), [], `none of ${TRANSFER_BUILTINS.join(', ')}`);
});
