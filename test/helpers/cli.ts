// Running the CLI in the test's process, with what it writes to stderr.
import { main } from '../../src/cli/main.js';

/** Runs `fleetcache <args>` through main() and returns its exit code and stderr. */
export async function runCli(args: string[]): Promise<{ code: number; stderr: string }> {
  const stderr: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string) => (stderr.push(String(chunk)), true)) as typeof process.stderr.write;
  try {
    return { code: await main(args), stderr: stderr.join('') };
  } finally {
    process.stderr.write = write;
  }
}
