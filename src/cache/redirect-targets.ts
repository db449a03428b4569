// Where an upstream's redirect may lead (a blob's fill follows them: upstream.ts). A
// redirect is upstream's word, and a mirror or tooltool server the cache does not run can
// point it at 127.0.0.1, a cloud's metadata address (169.254.169.254) or a host of the
// private network behind the cache, whose answer would then reach an anonymous client. Such
// addresses are refused unless the upstream is itself on one (an internal deployment) or
// `privateRedirects: allow` says so. The check is made on the address connected to: the
// target's name is resolved once, by the socket's own lookup, and the addresses checked are
// those it connects to, so that a name resolving to a public address for a check and to
// 127.0.0.1 for the connection (DNS rebinding) cannot pass.
import { lookup as dnsLookup } from 'node:dns';
import { lookup } from 'node:dns/promises';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { buildConnector } from 'undici';

export const PRIVATE_REDIRECTS = ['auto', 'allow', 'refuse'] as const;
/** auto: refused unless the upstream's own address is not public; allow: never refused; refuse: always. */
export type PrivateRedirects = (typeof PRIVATE_REDIRECTS)[number];

/**
 * Addresses a public server is never on, by what they are. IPv6 ones that embed IPv4
 * addresses are checked as those IPv4 (embeddedIPv4s), IPv4-mapped ones by BlockList itself.
 */
const NOT_PUBLIC: ReadonlyArray<readonly [kind: string, subnets: ReadonlyArray<readonly [string, number]>]> = [
  ['loopback', [['127.0.0.0', 8], ['::1', 128]]],
  ['unspecified', [['0.0.0.0', 8], ['::', 128]]],
  // 64:ff9b:1::/48: NAT64 for a local network (RFC 8215), where the IPv4 sits at a place its operator chose
  ['private', [['10.0.0.0', 8], ['172.16.0.0', 12], ['192.168.0.0', 16], ['100.64.0.0', 10], ['fc00::', 7], ['64:ff9b:1::', 48]]],
  ['link-local', [['169.254.0.0', 16], ['fe80::', 10]]],
  ['multicast', [['224.0.0.0', 4], ['ff00::', 8]]],
  // 2001::/23: IETF protocol assignments, not globally reachable (RFC 6890) but for the blocks below
  ['reserved', [['192.0.0.0', 24], ['198.18.0.0', 15], ['240.0.0.0', 4], ['fec0::', 10], ['::', 96], ['2001::', 23]]],
];

/**
 * The blocks of 2001::/23 that are globally reachable (IANA's IPv6 special-purpose registry):
 * anycast PCP, TURN and DNS-SD SRP, AMT, AS112-v6, ORCHIDv2, drone remote ID; and Teredo
 * (2001::/32, "N/A": reached through a relay), checked through the IPv4 addresses it embeds.
 */
const GLOBAL_IN_RESERVED = new BlockList();
for (const [net, prefix] of [['2001:1::1', 128], ['2001:1::2', 128], ['2001:1::3', 128], ['2001:3::', 32], ['2001:4:112::', 48], ['2001:20::', 28], ['2001:30::', 28], ['2001::', 32]] as const) {
  GLOBAL_IN_RESERVED.addSubnet(net, prefix, 'ipv6');
}

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
  const embedded = embeddedIPv4s(address).map((ipv4) => kindIn(ipv4, 'ipv4')).find((kind) => kind !== undefined);
  return embedded ?? (GLOBAL_IN_RESERVED.check(address, 'ipv6') ? undefined : kindIn(address, 'ipv6'));
}

/**
 * The IPv4 addresses an IPv6 one reaches by design: NAT64's (64:ff9b::/96, RFC 6052, a
 * gateway connects to it), 6to4's (2002::/16, RFC 3056), an IPv4-compatible one's (::/96
 * but :: and ::1, RFC 4291) and Teredo's (2001::/32, RFC 4380: its server's in bits 32-63,
 * its client's, each bit inverted, in the last 32, both on the relay's way to the client).
 * 64:ff9b::7f00:1 is 127.0.0.1 on a NAT64 network.
 */
function embeddedIPv4s(address: string): string[] {
  const g = ipv6Groups(address);
  if (g === undefined) return [];
  const [g0, g1, g2, g3, g4, g5, g6, g7] = g;
  const ipv4 = (high: number, low: number): string => [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
  const zeroFrom2To5 = (g2 | g3 | g4 | g5) === 0;
  if (g0 === 0x64 && g1 === 0xff9b && zeroFrom2To5) return [ipv4(g6, g7)];
  if (g0 === 0x2002) return [ipv4(g1, g2)];
  if (g0 === 0x2001 && g1 === 0) return [ipv4(g2, g3), ipv4(g6 ^ 0xffff, g7 ^ 0xffff)];
  if ((g0 | g1) === 0 && zeroFrom2To5 && (g6 !== 0 || g7 > 1)) return [ipv4(g6, g7)];
  return [];
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

/**
 * The connector of the dispatcher that follows redirects of the upstream on `upstreamHost`,
 * under `policy`; undefined when every address is allowed (undici's own connector then).
 * Its refusals are RefusedTargetError.
 */
export function redirectConnector(policy: PrivateRedirects, upstreamHost: string, connectMs: number): buildConnector.connector | undefined {
  if (policy === 'allow') return undefined;
  const check = checkedLookup(policy, unbracketed(upstreamHost));
  const connect = buildConnector({ timeout: connectMs, lookup: check });
  return (options, callback) => {
    const literal = unbracketed(options.hostname);
    if (isIP(literal) === 0) return connect(options, callback);
    // an address written in the URL: the socket makes no lookup for it, so it is checked here
    check(literal, {}, (err) => (err ? callback(err, null) : connect(options, callback)));
  };
}

function unbracketed(host: string): string {
  return host.replace(/^\[(.*)\]$/, '$1');
}

/**
 * The socket's own lookup (net.connect's `lookup`): every address a target's name resolves
 * to is checked before the socket connects to any of them, the very addresses it is then
 * given (no second resolution to rebind); the connect timeout covers the lookup, and the
 * socket still falls back over a name's addresses as undici's connector does.
 */
function checkedLookup(policy: PrivateRedirects, upstreamHostname: string): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, options, (err, address, family) => {
      if (err) return callback(err, address, family);
      const addresses = typeof address === 'string' ? [address] : address.map((a) => a.address);
      const kind = addresses.map(notPublicKind).find((k) => k !== undefined);
      if (kind === undefined) return callback(null, address, family);
      // asked only when a target is refused: the upstream's own address (an internal deployment's, where its redirects may stay)
      void (policy === 'refuse' ? Promise.resolve(undefined) : lookup(upstreamHostname).then((own) => notPublicKind(own.address))).then(
        (upstreamKind) => (upstreamKind === undefined ? callback(new RefusedTargetError(kind), '', 0) : callback(null, address, family)),
        (lookupErr: NodeJS.ErrnoException) => callback(lookupErr, '', 0),
      );
    });
  };
}
