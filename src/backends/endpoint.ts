// SSH addresses (`host[:port]`) read, and which machine one names however it is written: the
// `ssh` backend's hosts listed twice, and the `adhoc` backend's addresses held by the run's
// machines. Apart from ssh-machine.ts, which loads ssh2: checking an address loads none of it.
import { isIPv6 } from 'node:net';

/**
 * "host[:port]" (IPv6 in brackets, or bare without a port) with a default port; undefined for
 * anything else, a port outside 1–65535 included (refused here as malformed, not later as a
 * connection that cannot be made).
 */
export function parseAddress(address: string, defaultPort = 22): { host: string; port: number } | undefined {
  if (isIPv6(address)) return { host: address, port: defaultPort };
  const m = /^(?:\[([^\]]+)\]|([^:\s]+))(?::(\d+))?$/.exec(address);
  if (!m) return undefined;
  const port = m[3] ? Number(m[3]) : defaultPort;
  return port >= 1 && port <= 65535 ? { host: (m[1] ?? m[2])!, port } : undefined;
}

/** parseAddress for an address already checked (a configuration's, one an allocate script gave). */
export function splitAddress(address: string, defaultPort = 22): { host: string; port: number } {
  const parsed = parseAddress(address, defaultPort);
  if (!parsed) throw new Error(`invalid address "${address}" (expected host[:port])`);
  return parsed;
}

/**
 * `host:port` with the host in one spelling: a name in lower case, an IP literal as the WHATWG
 * URL parser writes it (`127.1` and `127.0.0.1`, `[0:0:0:0:0:0:0:1]` and `[::1]` are one, as
 * getaddrinfo reads them). A name is not resolved: its addresses may change during the run
 * (a cloud's DNS, round robin), and a lookup at every allocation would cost a DNS round trip.
 */
export function endpointOf(address: string, defaultPort = 22): string {
  const { host, port } = splitAddress(address, defaultPort);
  return `${canonicalHost(host)}:${port}`;
}

function canonicalHost(host: string): string {
  try {
    return new URL(`http://${isIPv6(host) ? `[${host}]` : host}/`).hostname;
  } catch {
    // a name the URL parser refuses (a zone index, `%`…): compared as written, in any case
    return host.toLowerCase();
  }
}
