// The command that runs this fleetcache again from where the user is, for lines that tell
// them what to type next: `fleetcache` where that name on their PATH is the running entry
// point, else `node <entry>` (in a checkout, `node bin/fleetcache.js`, which `npm run` uses;
// no `fleetcache` is on the PATH there).
import { accessSync, constants, realpathSync } from 'node:fs';
import { basename, delimiter, isAbsolute, join, relative, resolve } from 'node:path';
import { shellQuote } from './shell-quote.js';

interface Invocation {
  /** The entry point that was started (process.argv[1]). */
  readonly entry: string;
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
}

const running: Invocation = { entry: process.argv[1] ?? 'fleetcache', env: process.env, cwd: process.cwd() };

/** The user's directory: npm runs a script in its package's root, and names the directory it was started in INIT_CWD. */
function userDir(o: Invocation): string {
  return o.env.INIT_CWD ?? o.cwd;
}

/** `path` (relative to the process's directory) as the user types it: relative to theirs when inside it, else absolute; one shell word. */
export function pathForUser(path: string, o: Invocation = running): string {
  const absolute = resolve(o.cwd, path);
  const inside = relative(userDir(o), absolute);
  const shown = inside !== '' && !inside.startsWith('..') && !isAbsolute(inside) ? inside : absolute;
  return /^[\w./@%+=:,-]+$/.test(shown) ? shown : shellQuote(shown);
}

/** The file `path` is, links followed; undefined when there is none. */
function realFile(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

/** The file `name` stands for on the user's PATH, if any; npm's node_modules/.bin additions (for its child only) left out. */
function onPath(name: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir === '' || /node_modules[/\\]\.bin[/\\]?$/.test(dir)) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return realFile(join(dir, name));
    } catch {
      // not there: the next directory
    }
  }
  return undefined;
}

/** `fleetcache <args>` as the user runs it from where they are (see the file's comment). */
export function commandLine(args: readonly string[], o: Invocation = running): string {
  const name = basename(o.entry);
  const entry = realFile(resolve(o.cwd, o.entry));
  const command = entry !== undefined && onPath(name, o.env) === entry ? name : `node ${pathForUser(o.entry, o)}`;
  return [command, ...args].join(' ');
}
