// Where client commands find their write token: --token-file FILE, else $FLEETCACHE_TOKEN.
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.js';

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

/** The token for a client command, or undefined when none is configured. */
export function resolveToken(tokenFile?: string): string | undefined {
  if (tokenFile) return readTokenFile(tokenFile);
  const env = process.env.FLEETCACHE_TOKEN?.trim();
  return env || undefined;
}
