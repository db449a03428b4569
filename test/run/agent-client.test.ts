// The runner's agent calls keep their arguments off the command line: a token in argv is
// readable by every user of the machine (ps, /proc/PID/cmdline) for the command's life.
import t from 'tap';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { LocalExecutor } from '../../src/backends/local.js';
import { runAgent } from '../../src/run/agent-client.js';
import { installAgent } from '../agent/helpers.js';
import { serveOnLoopback } from '../helpers/loopback-server.js';

/** The PIDs whose command line holds `text`. */
function commandLinesHolding(text: string): number[] {
  const found: number[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text)) found.push(Number(pid));
    } catch {
      // the process ended meanwhile
    }
  }
  return found;
}

t.test('an agent token travels on stdin, not on any command line', async (t) => {
  const agent = await installAgent(t);
  const dir = t.testdir();
  writeFileSync(join(dir, 'log.txt'), 'log line\n');
  const secret = `secret-${process.pid}-${Date.now()}`;
  let seen: { authorization: string | undefined; holders: number[] } | undefined;
  // While the agent's upload waits for this answer, its process is alive: look at every command line then.
  const server = createServer((req, res) => {
    seen ??= { authorization: req.headers.authorization, holders: commandLinesHolding(secret) };
    req.resume();
    res.writeHead(503, { 'content-type': 'application/json' }).end('{"code":"FC_ERR_UNAVAILABLE","message":"test server"}');
  });
  const url = await serveOnLoopback(t, server);

  const executor = new LocalExecutor(dir);
  const machine = { name: 'local:test', exec: executor.exec.bind(executor) };
  await t.rejects(
    runAgent(machine, agent, 'artifacts', { url, token: secret, run: 'run-1', job: 'job', cwd: dir, paths: ['log.txt'] }),
    { message: /HTTP 503: test server/ },
    'the server refused the upload',
  );
  t.ok(seen, 'the agent reached the server');
  t.equal(seen?.authorization, `Bearer ${secret}`, 'the agent had the token');
  t.same(seen?.holders, [], 'no command line held it');
});
