// Where an upstream's redirect may lead (a blob's fill follows them: upstream.ts). A
// redirect is upstream's word, and a mirror or tooltool server the cache does not run can
// point it at 127.0.0.1, a cloud's metadata address (169.254.169.254) or a host of the
// private network behind the cache, whose answer would then reach an anonymous client. Such
// addresses are refused unless the upstream is itself on one (an internal deployment) or
// `privateRedirects: allow` says so. The check is made on the address connected to: the
// target's name is resolved once and that very address connected, so that a name
// resolving to a public address for a check and to 127.0.0.1 for the connection (DNS
// rebinding) cannot pass.
import { lookup } from 'node:dns/promises';
import { BlockList } from 'node:net';
import { buildConnector } from 'undici';

export const PRIVATE_REDIRECTS = ['auto', 'allow', 'refuse'] as const;
/** auto: refused unless the upstream's own address is not public; allow: never refused; refuse: always. */
export type PrivateRedirects = (typeof PRIVATE_REDIRECTS)[number];

/** Addresses a public server is never on, by what they are (IPv4-mapped IPv6 ones are checked as their IPv4). */
const NOT_PUBLIC: ReadonlyArray<readonly [kind: string, subnets: ReadonlyArray<readonly [string, number]>]> = [
  ['loopback', [['127.0.0.0', 8], ['::1', 128]]],
  ['unspecified', [['0.0.0.0', 8], ['::', 128]]],
  ['private', [['10.0.0.0', 8], ['172.16.0.0', 12], ['192.168.0.0', 16], ['100.64.0.0', 10], ['fc00::', 7]]],
  ['link-local', [['169.254.0.0', 16], ['fe80::', 10]]],
  ['multicast', [['224.0.0.0', 4], ['ff00::', 8]]],
  ['reserved', [['192.0.0.0', 24], ['198.18.0.0', 15], ['240.0.0.0', 4], ['fec0::', 10], ['::', 96]]],
];

const LISTS = NOT_PUBLIC.map(([kind, subnets]) => {
  const list = new BlockList();
  for (const [net, prefix] of subnets) list.addSubnet(net, prefix, net.includes(':') ? 'ipv6' : 'ipv4');
  return [kind, list] as const;
});

/** What `address` (an IP address) is when no public server is on it ("loopback", "link-local"…); undefined for a public one. */
export function notPublicKind(address: string): string | undefined {
  const family = address.includes(':') ? 'ipv6' : 'ipv4';
  return LISTS.find(([, list]) => list.check(address, family))?.[0];
}

/** A redirect target refused for its address (Upstream names it in its 502). */
export class RefusedTargetError extends Error {
  constructor(readonly kind: string) {
    super(`a redirect to a ${kind} address, refused (privateRedirects)`);
  }
}

/** The address `host` (a name or an IP address, without brackets) is connected at: the first the resolver gives. */
async function addressOf(host: string): Promise<string> {
  return (await lookup(host)).address;
}

/**
 * The connector of the dispatcher that follows redirects of the upstream on `upstreamHost`,
 * under `policy`; undefined when every address is allowed (undici's own connector then).
 * Its refusals are RefusedTargetError.
 */
export function redirectConnector(policy: PrivateRedirects, upstreamHost: string, connectMs: number): buildConnector.connector | undefined {
  if (policy === 'allow') return undefined;
  const connect = buildConnector({ timeout: connectMs });
  const upstreamHostname = upstreamHost.replace(/^\[(.*)\]$/, '$1');
  return (options, callback) => {
    void (async () => {
      const address = await addressOf(options.hostname);
      const kind = notPublicKind(address);
      // asked only when a target is refused: the upstream's own address (an internal deployment's, where its redirects may stay)
      if (kind !== undefined && (policy === 'refuse' || notPublicKind(await addressOf(upstreamHostname)) === undefined)) throw new RefusedTargetError(kind);
      // the address checked, not the name (resolved again, it could give another); TLS still checks the name (`host`)
      connect({ ...options, hostname: address }, callback);
    })().catch((err: Error) => callback(err, null));
  };
}
