// Shared by the CLI tests of pack/delta/apply and the client commands: main()'s refusals, and
// a file that keeps growing.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { statSync, writeFileSync } from 'node:fs';
import type { Test } from 'tap';
import { runCli } from '../helpers/cli.js';
import { stopWithTest } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';

/** A command line main() refuses: with exit status `code`, an error matching `message`, and no stack trace. */
export async function expectCliError(t: Test, name: string, args: string[], code: number, message: RegExp): Promise<void> {
  const got = await runCli(args);
  t.equal(got.code, code, `${name}: exit ${code}`);
  t.match(got.stderr, message, name);
  t.notMatch(got.stderr, /\n\s+at /, `${name}: no stack trace`);
}

/**
 * A 32 MiB file that a shell loop appends to: it changes while packed. Call the returned
 * stop() before the test ends: its directory cannot be removed while the loop writes in it
 * (the teardown also stops it, but may run after the removal of the test's directory).
 */
export async function growingFile(t: Test, file: string): Promise<() => Promise<void>> {
  writeFileSync(file, randomBytes(32 << 20));
  const appender = spawn('sh', ['-c', `while :; do echo more >> '${file}'; done`], { stdio: 'ignore' });
  const stop = stopWithTest(t, appender);
  await eventually('the file grows', () => statSync(file).size > 32 << 20);
  return stop;
}
