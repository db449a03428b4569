// The processes of a short run read too few HTTP responses for V8 to optimize undici's
// parser (wasm-tiering.ts): a one-task run had the runner and the machine's agent each spend
// a quarter of a second of CPU on TurboFan for it. V8 prints each wasm function it compiles
// (--trace-wasm-compilation-times, on stdout); the agent is started as `node` from PATH
// by the local machine's script, here a wrapper passing the flag and copying its stdout.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { cliArgs } from './helpers/processes.js';

const TRACE = '--trace-wasm-compilation-times';

t.test("a one-task run's runner and agent compile no wasm with TurboFan", (t) => {
  const dir = t.testdir({
    project: {
      'spread.yaml': 'project: small\npath: /home/small\nbackends:\n  local:\n    type: local\n    systems:\n      - alpha-1:\n          workers: 1\nsuites:\n  tests/:\n    summary: tasks\n',
      tests: { t1: { 'task.yaml': 'summary: t1\nexecute: |\n  echo ok\n' } },
    },
  });
  const bin = join(dir, 'bin');
  const agentTrace = join(dir, 'agent-trace.log');
  mkdirSync(bin);
  writeFileSync(join(bin, 'node'), `#!/bin/bash\nexec ${JSON.stringify(process.execPath)} ${TRACE} "$@" > >(tee -a ${JSON.stringify(agentTrace)})\n`);
  chmodSync(join(bin, 'node'), 0o755);
  const res = spawnSync(process.execPath, [TRACE, ...cliArgs(['run'])], {
    cwd: join(dir, 'project'),
    env: { ...process.env, PATH: `${bin}${delimiter}${process.env.PATH ?? ''}` },
    encoding: 'utf8',
    timeout: 120_000,
  });
  t.equal(res.status, 0, 'the run passes', { output: `${res.stdout}\n${res.stderr}`.slice(-3000) });
  t.match(res.stdout, /Successful tasks: 1\b/);
  t.match(res.stdout, /^Compiled function .* using Liftoff/m, "the runner's wasm compiles were traced (else this test proves nothing)");
  t.ok(existsSync(agentTrace), 'the agent ran through the wrapper');
  const agent = readFileSync(agentTrace, 'utf8');
  t.match(agent, /^Compiled function .* using Liftoff/m, "the agent's wasm compiles were traced");
  t.notMatch(res.stdout, /using TurboFan/, 'the runner optimized none');
  t.notMatch(agent, /using TurboFan/, 'the agent optimized none');
  t.end();
});
