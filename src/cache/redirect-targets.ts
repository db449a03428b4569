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

/**
 * Addresses a public server is never on, by what they are. IPv6 ones that embed an IPv4
 * address are checked as their IPv4 (embeddedIPv4), IPv4-mapped ones by BlockList itself.
 */
const NOT_PUBLIC: ReadonlyArray<readonly [kind: string, subnets: ReadonlyArray<readonly [string, number]>]> = [
  ['loopback', [['127.0.0.0', 8], ['::1', 128]]],
  ['unspecified', [['0.0.0.0', 8], ['::', 128]]],
  // 64:ff9b:1::/48: NAT64 for a local network (RFC 8215), where the IPv4 sits at a place its operator chose
  ['private', [['10.0.0.0', 8], ['172.16.0.0', 12], ['192.168.0.0', 16], ['100.64.0.0', 10], ['fc00::', 7], ['64:ff9b:1::', 48]]],
  ['link-local', [['169.254.0.0', 16], ['fe80::', 10]]],
  ['multicast', [['224.0.0.0', 4], ['ff00::', 8]]],
  ['reserved', [['192.0.0.0', 24], ['198.18.0.0', 15], ['240.0.0.0', 4], ['fec0::', 10], ['::', 96]]],
];

const LISTS = NOT_PUBLIC.map(([kind, subnets]) => {
  const list = new BlockList();
  for (const [net, prefix] of subnets) list.addSubnet(net, prefix, net.includes(':') ? 'ipv6' : 'ipv4');
  return [kind, list] as const;
});

function kindIn(address: string, family: 'ipv4' | 'ipv6'): string | undefined {
  return LISTS.find(([, list]) => list.check(address, family))?.[0];
}

/** What `address` (an IP address) is when no public server is on it ("loopback", "link-local"…); undefined for a public one. */
export function notPublicKind(address: string): string | undefined {
  if (!address.includes(':')) return kindIn(address, 'ipv4');
  const embedded = embeddedIPv4(address);
  return (embedded === undefined ? undefined : kindIn(embedded, 'ipv4')) ?? kindIn(address, 'ipv6');
}

/**
 * The IPv4 address an IPv6 one reaches by design: NAT64's (64:ff9b::/96, RFC 6052, a
 * gateway connects to it), 6to4's (2002::/16, RFC 3056) and an IPv4-compatible one's
 * (::/96 but :: and ::1, RFC 4291). 64:ff9b::7f00:1 is 127.0.0.1 on a NAT64 network.
 */
function embeddedIPv4(address: string): string | undefined {
  const g = ipv6Groups(address);
  if (g === undefined) return undefined;
  const [g0, g1, g2, g3, g4, g5, g6, g7] = g;
  const ipv4 = (high: number, low: number): string => [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
  const zeroFrom2To5 = (g2 | g3 | g4 | g5) === 0;
  if (g0 === 0x64 && g1 === 0xff9b && zeroFrom2To5) return ipv4(g6, g7);
  if (g0 === 0x2002) return ipv4(g1, g2);
  if ((g0 | g1) === 0 && zeroFrom2To5 && (g6 !== 0 || g7 > 1)) return ipv4(g6, g7);
  return undefined;
}

type Groups = [number, number, number, number, number, number, number, number];

/** The eight 16-bit groups of an IPv6 address (`::` and a trailing dotted IPv4 expanded, a zone dropped); undefined when it is not one. */
function ipv6Groups(address: string): Groups | undefined {
  const halves = address.replace(/%.*$/, '').split('::');
  if (halves.length > 2) return undefined;
  const parse = (part: string): number[] | undefined => {
    const groups: number[] = [];
    for (const piece of part === '' ? [] : part.split(':')) {
      const dotted = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(piece);
      if (dotted) groups.push((Number(dotted[1]) << 8) | Number(dotted[2]), (Number(dotted[3]) << 8) | Number(dotted[4]));
      else if (/^[0-9a-f]{1,4}$/i.test(piece)) groups.push(parseInt(piece, 16));
      else return undefined;
    }
    return groups;
  };
  const [head, tail] = halves.map(parse);
  if (head === undefined || (halves.length === 2 && tail === undefined)) return undefined;
  const missing = 8 - head.length - (tail?.length ?? 0);
  const groups = tail === undefined ? head : [...head, ...new Array<number>(Math.max(missing, 0)).fill(0), ...tail];
  return groups.length === 8 && (tail === undefined || missing >= 1) ? (groups as Groups) : undefined;
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
