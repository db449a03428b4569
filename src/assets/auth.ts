// tooltool's --authentication-file (shared/tooltool.md §3.2): the file's stripped content
// is sent as `Authorization: Bearer <content>`, unless it parses as JSON, which tooltool
// takes for Taskcluster credentials and signs with Hawk. fleetcache sends bearer tokens
// only: such a file is never sent as a token that cannot work. A fetch goes on without
// credentials (public files need none, as with tooltool), an upload is refused.
import { execFileSync } from 'node:child_process';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { readTokenFile, readTokenText } from '../client/token.js';

/**
 * The home directory of the user `name` from the system's user database (getpwnam, which
 * node lacks: `getent passwd`, so that NSS users count too); undefined when there is no
 * such user or no getent. getent takes a number for a uid: the entry must bear the name.
 */
function userHome(name: string): string | undefined {
  let entry: string;
  try {
    entry = execFileSync('getent', ['passwd', '--', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });
  } catch {
    return undefined;
  }
  const fields = entry.split('\n')[0]!.split(':');
  return fields.length >= 7 && fields[0] === name ? fields[5] : undefined;
}

/**
 * `~`, `~/…`, `~user` and `~user/…` as Python's os.path.expanduser reads them (`~`: $HOME,
 * else the user's home); an unknown user leaves the path as it is.
 */
function expandHome(path: string): string {
  if (!path.startsWith('~')) return path;
  const slash = path.indexOf('/');
  const name = path.slice(1, slash === -1 ? undefined : slash);
  const home = name === '' ? homedir() : userHome(name);
  if (home === undefined) return path;
  return slash === -1 ? home : join(home, path.slice(slash + 1));
}

function parsesAsJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** What a tooltool authentication file holds: a bearer token, or (`taskcluster`: its path) Taskcluster credentials. */
type AuthenticationFile = { readonly token: string } | { readonly taskcluster: string };

/** A tooltool authentication file (`~` and `~user` expanded), read as tooltool reads it. */
export function readAuthenticationFile(file: string): AuthenticationFile {
  const path = expandHome(file);
  const text = readTokenText(path);
  return parsesAsJson(text.trim()) ? { taskcluster: path } : { token: readTokenFile(path, text) };
}

/** Why Taskcluster credentials in `path` are not sent, and what the command does instead. */
export function taskclusterNotSent(path: string, instead: string): string {
  return `${path}: the authentication file holds JSON, which tooltool takes for Taskcluster credentials (Hawk authentication); fleetcache sends only bearer tokens: ${instead}`;
}
