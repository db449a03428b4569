// Commands that stand in for another tool whose callers test for exit status 1 (spread
// -list, tooltool.py) end every error so, instead of with the catalogue's exit code: the
// action prints the error itself and sets process.exitCode, which main() returns.
import { toFleetError } from '../errors.js';

/**
 * Runs `action`; an error it throws is printed as `<prefix><message>` on stderr (with the
 * stack for an internal error, as main() prints it) and ends the command with exit status 1.
 */
export async function exitOneOnError(prefix: string, action: () => Promise<void>): Promise<void> {
  try {
    await action();
  } catch (err) {
    const fe = toFleetError(err);
    const stack = fe.code === 'FC_ERR_INTERNAL' && err instanceof Error && err.stack ? `\n${err.stack}` : '';
    process.stderr.write(`${prefix}${fe.message}${stack}\n`);
    process.exitCode = 1;
  }
}
