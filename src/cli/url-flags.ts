// Checks of the URLs a command is given, before anything is sent: a malformed URL is the
// user's mistake and gets a usage error naming the flag, not the exit 6 of an unreachable
// network. Paths are checked by ../path-checks.ts.
import { parseHttpUrl } from '../config/units.js';
import { errorMessage, UsageError } from '../errors.js';

/** Fails with a usage error naming `flag` unless every value is an http or https URL. */
export function requireHttpUrl(flag: string, ...values: string[]): void {
  for (const value of values) {
    try {
      parseHttpUrl(value);
    } catch (err) {
      throw new UsageError(`${flag}: ${errorMessage(err)}`);
    }
  }
}
