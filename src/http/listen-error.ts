// Why a server could not listen, as a configuration error the user can act on.
import { ConfigError } from '../errors.js';

/** Why the system refused to listen, in the user's terms. */
const LISTEN_ERRORS: Record<string, string> = {
  EADDRINUSE: 'the port is in use by another process',
  EADDRNOTAVAIL: 'the address is not one of this machine\'s',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  ENOTFOUND: 'the host name does not resolve',
  EAI_AGAIN: 'the host name does not resolve (for now)',
  EAI_FAIL: 'the host name does not resolve',
};

/** A failed listen as a configuration error (exit 3) naming the address, when the cause is the address or the system. */
export function listenError(err: unknown, listen: string): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const why = code === undefined ? undefined : LISTEN_ERRORS[code];
  if (why === undefined) return err;
  return new ConfigError(`cannot listen on ${listen}: ${why} (${code})`, undefined, undefined, 'listen');
}
