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
