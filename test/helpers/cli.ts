// Running the CLI in the test's process, with what it writes to stdout and stderr.
import { main } from '../../src/cli/main.js';

type Write = typeof process.stdout.write;

/** Runs `fleetcache <args>` through main() and returns its exit code, stdout and stderr; this process's exit code is left as it was. */
export async function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const captured = { stdout: [] as string[], stderr: [] as string[] };
  const writes = { stdout: process.stdout.write, stderr: process.stderr.write };
  for (const name of ['stdout', 'stderr'] as const) {
    process[name].write = ((chunk: string | Uint8Array, ...rest: Array<(() => void) | string | undefined>) => {
      captured[name].push(String(chunk));
      const cb = rest.find((r) => typeof r === 'function');
      cb?.();
      return true;
    }) as Write;
  }
  const exitCode = process.exitCode;
  try {
    const code = await main(args);
    return { code, stdout: captured.stdout.join(''), stderr: captured.stderr.join('') };
  } finally {
    process.stdout.write = writes.stdout;
    process.stderr.write = writes.stderr;
    process.exitCode = exitCode; // set by commands that end with exit status 1 (src/cli/exit-one.ts)
  }
}

/**
 * `fleetcache <args>` through main() in this process, as a child process would run it: in
 * `cwd`, with `env` over this process's and no $FLEETCACHE_TOKEN unless `env` gives one,
 * stdout and stderr not terminals. A third of a second of CPU less than a process each: for
 * the tests of a command's logic, not of the process (its exit status as a shell sees it).
 */
export async function runHere(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const before = { cwd: process.cwd(), env: { ...process.env }, tty: [process.stdout.isTTY, process.stderr.isTTY] as const };
  Object.assign(process.env, { FLEETCACHE_TOKEN: '', ...env });
  process.chdir(cwd);
  process.stdout.isTTY = false;
  process.stderr.isTTY = false;
  try {
    return await runCli(args);
  } finally {
    process.chdir(before.cwd);
    for (const name of Object.keys(process.env)) if (!(name in before.env)) delete process.env[name];
    Object.assign(process.env, before.env);
    [process.stdout.isTTY, process.stderr.isTTY] = before.tty;
  }
}
