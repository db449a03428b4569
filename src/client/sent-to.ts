// Which server an error came from, told by the request it carries (FleetError.request),
// not by words of its message: a cache's URL may hold the origin's as a prefix
// (http://host:800 and http://host:8000, https://proxy/fc and https://proxy/fc-eu).
import type { FleetError } from '../errors.js';

/**
 * Whether `error` is about a request to the server at `base` (a base URL, maybe with a path
 * prefix): the same scheme, host and port, and a path at or under base's, segment by segment.
 * An error no server's answer caused (a local file, a full disk) is about none.
 */
export function sentTo(error: FleetError, base: string): boolean {
  if (!error.request) return false;
  let sent: URL;
  let server: URL;
  try {
    sent = new URL(error.request.url);
    server = new URL(base);
  } catch {
    return false;
  }
  const prefix = server.pathname.replace(/\/+$/, '');
  return sent.origin === server.origin && (sent.pathname === prefix || sent.pathname.startsWith(`${prefix}/`));
}
