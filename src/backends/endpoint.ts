// Which machine an SSH address names, however it is written: the `ssh` backend's hosts
// listed twice, and the `adhoc` backend's addresses held by the run's machines.
import { isIPv6 } from 'node:net';
import { splitAddress } from './ssh-machine.js';

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
