// Where client commands find their write token: --token-file FILE, else $FLEETCACHE_TOKEN;
// and the origin's list of write tokens.
import { readFileSync, statSync } from 'node:fs';
import { ConfigError } from '../errors.js';

/** A write token shorter than this is refused in a token file: a stray word or a typo, not a secret. */
export const MIN_TOKEN_LENGTH = 16;

/**
 * The write tokens of a server's token file: one per line, blank lines and `#` comments
 * skipped (a comment line was taken for a token that anyone could guess). Refuses a token
 * shorter than MIN_TOKEN_LENGTH, naming its line, never its text.
 */
export function readTokenLines(file: string): string[] {
  const tokens: string[] = [];
  for (const [i, line] of readTokenFile(file).split('\n').entries()) {
    const token = line.trim();
    if (!token || token.startsWith('#')) continue;
    if (token.length < MIN_TOKEN_LENGTH) throw new ConfigError(`${file}:${i + 1}: a write token must be at least ${MIN_TOKEN_LENGTH} characters`, file, i + 1);
    tokens.push(token);
  }
  if (tokens.length === 0) throw new ConfigError(`${file}: token file has no token (only comments)`, file);
  return tokens;
}

/** A warning when `file`, a server's secret, can be read by others than its owner. */
export function exposedSecretWarning(file: string): string | undefined {
  const mode = statSync(file).mode & 0o777;
  return mode & 0o077 ? `${file} can be read by others than its owner (mode ${mode.toString(8).padStart(4, '0')}): chmod 600 it` : undefined;
}

export function readTokenFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read token file: ${(err as Error).message}`, file);
  }
  const token = text.trim();
  if (!token) throw new ConfigError(`${file}: token file is empty`, file);
  return token;
}

/** The environment variable a token may come from, for commands without --token-file. */
export const TOKEN_ENV = 'FLEETCACHE_TOKEN';

/** The token for a client command, or undefined when none is configured. */
export function resolveToken(tokenFile?: string): string | undefined {
  if (tokenFile) return readTokenFile(tokenFile);
  const env = process.env[TOKEN_ENV]?.trim();
  return env || undefined;
}
