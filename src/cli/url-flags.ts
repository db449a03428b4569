// Checks of the URLs a command is given, before anything is sent: a malformed URL is the
// user's mistake and gets a usage error naming the flag, not the exit 6 of an unreachable
// network. Paths are checked by ../path-checks.ts.
import { parseBaseUrl, parseHttpUrl } from '../config/units.js';
import { errorMessage, UsageError } from '../errors.js';

function requireEach(parse: (text: string) => URL, flag: string, values: readonly string[]): void {
  for (const value of values) {
    try {
      parse(value);
    } catch (err) {
      throw new UsageError(`${flag}: ${errorMessage(err)}`);
    }
  }
}

/** Fails with a usage error naming `flag` unless every value is an http or https URL. */
export function requireHttpUrl(flag: string, ...values: string[]): void {
  requireEach(parseHttpUrl, flag, values);
}

/**
 * requireHttpUrl for a server's base URL, whose namespace paths are joined to it (joinUrl):
 * one with a query or fragment is refused, which swallowed every path joined after it (and
 * printed a token there with each failed request).
 */
export function requireBaseUrl(flag: string, ...values: string[]): void {
  requireEach(parseBaseUrl, flag, values);
}
