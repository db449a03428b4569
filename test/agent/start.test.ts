// The agent starts for every job that declares assets or artifacts, on every machine: a
// command evaluates only its own code. `version` (as a usage error would) loads none of
// what the transfers need: the HTTP client (undici) and, with it, Node's http, tls and dns.
// A transfer loads undici's clients only (scripts/undici-core.cjs), not its index.js, whose
// fetch, WebSocket and cookies loaded Node's own copy of undici and its worker_threads; and
// over plain HTTP, not undici's HTTP/2 client with Node's http2, https and tls
// (scripts/lazy-modules.mjs).
import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { installAgent, statusServer } from './helpers.js';

const BUILTINS = 'fleetcache-test-builtins ';
const TRANSFER_BUILTINS = ['http', 'https', 'tls', 'dns'];

/** The agent's JSON answer to `command` and the builtins its process loaded. */
async function builtinsLoaded(t: Test, command: string, args: object): Promise<{ answer: unknown; loaded: Set<string> }> {
  const agent = await installAgent(t);
  const logger = join(t.testdir(), 'log-builtins.mjs');
  writeFileSync(logger, `process.on('exit', () => process._rawDebug(${JSON.stringify(BUILTINS)} + process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice('NativeModule '.length)).join(' ')));\n`);
  const { stdout, stderr } = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
    execFile(process.execPath, ['--import', logger, agent, command, '--json-args', JSON.stringify(args)], { timeout: 30_000 }, (err, stdout, stderr) => (err ? reject(new Error(`agent ${command}: ${err.message}\n${stderr}`)) : resolve({ stdout, stderr })));
  });
  const line = stderr.split('\n').find((l) => l.startsWith(BUILTINS));
  t.ok(line, 'the builtins were logged');
  return { answer: JSON.parse(stdout) as unknown, loaded: new Set(line!.slice(BUILTINS.length).split(' ')) };
}

t.test('the agent answers version without loading the transfer code', async (t) => {
  const { answer, loaded } = await builtinsLoaded(t, 'version', {});
  t.match(answer, { ok: true, version: String });
  t.ok(loaded.has('fs'), 'the list holds what any start loads');
  t.same(TRANSFER_BUILTINS.filter((name) => loaded.has(name)), [], `none of ${TRANSFER_BUILTINS.join(', ')}`);
});

t.test("a transfer loads undici's clients, not Node's own undici nor worker_threads (undici's index.js), nor http2, https, tls", async (t) => {
  const url = await statusServer(t, 200);
  const { answer, loaded } = await builtinsLoaded(t, 'artifacts', { url, run: 'r1', job: 'j1', cwd: t.testdir(), paths: [] });
  t.match(answer, { ok: true, files: 0 }, 'the upload was made');
  t.ok(loaded.has('http'), 'it loads http (the check sees the transfer)');
  t.same(['internal/deps/undici/undici', 'worker_threads'].filter((name) => loaded.has(name)), [], 'nor Node\'s undici, nor worker_threads');
  t.same(['http2', 'https', 'tls'].filter((name) => loaded.has(name)), [], 'nor, over plain HTTP, http2, https or tls');
});
