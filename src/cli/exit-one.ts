// Commands that stand in for another tool whose callers test for exit status 1 (spread
// -list, tooltool.py) end every error so, instead of with the catalogue's exit code: the
// action prints the error itself and sets process.exitCode, which main() returns.
import { toFleetError } from '../errors.js';

/** An error as the CLI prints it: its message, and the stack for an internal error only. */
export function errorText(err: unknown): string {
  const fe = toFleetError(err);
  return `${fe.message}${fe.code === 'FC_ERR_INTERNAL' && err instanceof Error && err.stack ? `\n${err.stack}` : ''}`;
}

/**
 * Runs `action`; an error it throws is printed as `<prefix>` and its errorText on stderr,
 * and ends the command with exit status 1.
 */
export async function exitOneOnError(prefix: string, action: () => Promise<void>): Promise<void> {
  try {
    await action();
  } catch (err) {
    process.stderr.write(`${prefix}${errorText(err)}\n`);
    process.exitCode = 1;
  }
}
