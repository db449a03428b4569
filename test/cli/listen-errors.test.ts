// A server that cannot listen, or a configuration naming a log level pino does not have,
// is a configuration error (exit 3) with a message naming the address or file:line:field,
// not an internal error (exit 70) with a stack trace.
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { runCli } from '../helpers/cli.js';

t.test('an address the server cannot listen on', async (t) => {
  const taken: Server = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => taken.close(() => resolve())));
  const inUse = `127.0.0.1:${(taken.address() as { port: number }).port}`;
  const dir = t.testdir({ 'origin.yaml': 'logLevel: silent\n', 'cache.yaml': 'logLevel: silent\nupstream: http://127.0.0.1:1\n' });
  const cases: [string, RegExp][] = [
    [inUse, /in use by another process \(EADDRINUSE\)/],
    ['8.8.8.8:0', /not one of this machine's \(EADDRNOTAVAIL\)/],
    ['no-such-host.invalid:0', /does not resolve \((ENOTFOUND|EAI_AGAIN|EAI_FAIL)\)/],
  ];
  for (const [listen, why] of cases) {
    for (const command of ['origin', 'cache']) {
      const { code, stderr } = await runCli([command, '-c', join(dir, `${command}.yaml`), '--listen', listen, '--data', join(dir, `${command}-data`)]);
      t.equal(code, 3, `${command} on ${listen}: exit 3 (each on the same data directory: the failed start released it)`);
      t.match(stderr, new RegExp(`^fleetcache: error: cannot listen on ${listen.replaceAll('.', '\\.')}: [^\\n]*${why.source}\\n$`), `${command} on ${listen}: one line naming the address and why`);
    }
  }
});

t.test('logLevel must be one of pino\'s levels', async (t) => {
  const dir = t.testdir();
  for (const [command, yaml] of [['origin', 'logLevel: verbose\n'], ['cache', 'upstream: http://127.0.0.1:1\nlogLevel: verbose\n']] as const) {
    const file = join(dir, `${command}.yaml`);
    writeFileSync(file, yaml);
    const { code, stderr } = await runCli([command, '-c', file, '--listen', '127.0.0.1:0', '--data', join(dir, 'data')]);
    t.equal(code, 3, `${command}: exit 3`);
    t.match(stderr, `${file}:${command === 'origin' ? 1 : 2}: logLevel: must be "fatal" or "error" or "warn" or "info" or "debug" or "trace" or "silent"`, `${command}: file:line:field and the levels`);
  }
});
