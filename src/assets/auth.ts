// tooltool's --authentication-file (shared/tooltool.md §3.2): the file's stripped content
// is sent as `Authorization: Bearer <content>`, unless it parses as JSON, which tooltool
// takes for Taskcluster credentials and signs with Hawk. fleetcache sends bearer tokens
// only, so such a file is refused by name rather than sent as a token that cannot work.
import { homedir } from 'node:os';
import { join } from 'node:path';
import { readTokenFile } from '../client/token.js';
import { ConfigError } from '../errors.js';

/** `~` and `~/…` as Python's os.path.expanduser reads them ($HOME, else the user's home). */
function expandHome(path: string): string {
  if (path === '~') return homedir();
  if (path.startsWith('~/')) return join(homedir(), path.slice(2));
  return path;
}

function parsesAsJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** The bearer token in a tooltool authentication file (`~` expanded). */
export function readAuthenticationFile(file: string): string {
  const path = expandHome(file);
  const token = readTokenFile(path);
  if (parsesAsJson(token)) {
    throw new ConfigError(
      `${path}: the authentication file holds JSON, which tooltool takes for Taskcluster credentials (Hawk authentication); ` +
        'fleetcache sends only bearer tokens: put the token itself in the file',
      path,
    );
  }
  return token;
}
