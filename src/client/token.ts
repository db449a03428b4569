// Where client commands find their write token: --token-file FILE, else $FLEETCACHE_TOKEN;
// and the origin's list of write tokens.
import { readFileSync, statSync } from 'node:fs';
import { ConfigError, errorMessage, UsageError } from '../errors.js';

/** A write token shorter than this is refused in a token file: a stray word or a typo, not a secret. */
export const MIN_TOKEN_LENGTH = 16;

/**
 * What a token may hold: what a header carries (visible ASCII, as RFC 6750's b64token, and
 * Latin-1, which undici sends and node reads back byte for byte), no space, no control.
 */
const TOKEN_TEXT = /^[\x21-\x7e\xa0-\xff]+$/;

/** What a token from the environment is told when it is not one word a header carries (clients and the origin alike). */
export function envTokenProblem(token: string): string | undefined {
  return TOKEN_TEXT.test(token) ? undefined : `$${TOKEN_ENV} is not one word of visible characters (no spaces, ASCII or Latin-1: no header could carry it)`;
}

/**
 * The tokens of a token file, with their line numbers: one per line, blank lines and `#`
 * comments skipped (a comment line was taken for a token that anyone could guess). A line
 * that no header could carry is refused, named by its line, never by its text.
 */
function tokenLines(file: string, text = readTokenText(file)): Array<{ line: number; token: string }> {
  const tokens: Array<{ line: number; token: string }> = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const token = raw.trim();
    if (!token || token.startsWith('#')) continue;
    if (!TOKEN_TEXT.test(token)) throw new ConfigError(`${file}:${i + 1}: a token is one word of visible characters (no spaces, ASCII or Latin-1; a comment line starts with #)`, file, i + 1);
    tokens.push({ line: i + 1, token });
  }
  if (tokens.length === 0) throw new ConfigError(`${file}: token file has no token${text.trim() ? ' (only comments)' : ' (it is empty)'}`, file);
  return tokens;
}

/**
 * The write tokens of a server's token file (tokenLines). Refuses a token shorter than
 * MIN_TOKEN_LENGTH, naming its line.
 */
export function readTokenLines(file: string): string[] {
  return tokenLines(file).map(({ line, token }) => {
    if (token.length < MIN_TOKEN_LENGTH) throw new ConfigError(`${file}:${line}: a write token must be at least ${MIN_TOKEN_LENGTH} characters`, file, line);
    return token;
  });
}

/** A warning when `file`, a server's secret, can be read by others than its owner. */
export function exposedSecretWarning(file: string): string | undefined {
  const mode = statSync(file).mode & 0o777;
  return mode & 0o077 ? `${file} can be read by others than its owner (mode ${mode.toString(8).padStart(4, '0')}): chmod 600 it` : undefined;
}

/** A token file's text; a file that cannot be read is a configuration error naming it. */
export function readTokenText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read token file: ${errorMessage(err)}`, file);
  }
}

/**
 * A client's token from a token file (`text`: the file's, already read): its first token, so
 * that a copy of the server's file (comments, a second token while one is rotated) works as it is.
 */
export function readTokenFile(file: string, text?: string): string {
  return tokenLines(file, text)[0]!.token;
}

/** The environment variable a token may come from, for commands without --token-file. */
export const TOKEN_ENV = 'FLEETCACHE_TOKEN';

/** The token for a client command, or undefined when none is configured. */
export function resolveToken(tokenFile?: string): string | undefined {
  if (tokenFile) return readTokenFile(tokenFile);
  const env = process.env[TOKEN_ENV]?.trim();
  const problem = env ? envTokenProblem(env) : undefined;
  if (problem) throw new UsageError(problem);
  return env || undefined;
}
