// Where a redirect may lead: an IPv6 address that reaches an IPv4 one by design (NAT64,
// 6to4, IPv4-compatible, Teredo) is what that IPv4 is, since a gateway connects to it.
import t from 'tap';
import { notPublicKind } from '../../src/cache/redirect-targets.js';

t.test('IPv6 addresses embedding an IPv4 one are checked as that IPv4', async (t) => {
  const kinds: ReadonlyArray<readonly [string, string | undefined]> = [
    ['64:ff9b::7f00:1', 'loopback'], ['64:ff9b::127.0.0.1', 'loopback'], ['64:ff9b:0:0:0:0:a9fe:a9fe', 'link-local'], ['64:ff9b::a00:1', 'private'],
    ['2002:7f00:1::', 'loopback'], ['2002:a9fe:a9fe::1', 'link-local'], ['2002:c0a8:1::', 'private'],
    ['::7f00:1', 'loopback'], ['::169.254.169.254', 'link-local'],
    ['64:ff9b:1::a00:1', 'private'],
    // Teredo: the server's IPv4 (bits 32-63), the client's inverted (the last 32 bits: f5ff:fffe is 10.0.0.1)
    ['2001:0:a9fe:a9fe::1', 'link-local'], ['2001:0:808:808:8000:63bf:f5ff:fffe', 'private'], ['2001:0:808:808:8000:63bf:80ff:fffe', 'loopback'],
    ['2001:0:808:808:8000:63bf:f7f7:f7f7', undefined],
    // as they were: the IPv6 addresses themselves, public IPv4 behind NAT64 or 6to4
    ['::1', 'loopback'], ['::', 'unspecified'], ['::ffff:10.0.0.1', 'private'], ['fe80::1%eth0', 'link-local'],
    ['64:ff9b::808:808', undefined], ['2002:808:808::1', undefined], ['2606:4700::1111', undefined], ['1:2:3:4:5:6:7:8', undefined],
  ];
  for (const [address, kind] of kinds) t.equal(notPublicKind(address), kind, `${address}: ${kind ?? 'public'}`);
});

t.test('2001::/23 is not public but for its globally reachable blocks (RFC 6890, IANA\'s special-purpose registry)', async (t) => {
  const kinds: ReadonlyArray<readonly [string, string | undefined]> = [
    ['2001:2::1', 'reserved'], ['2001:10::1', 'reserved'], ['2001:1::4', 'reserved'], ['2001:1ff::1', 'reserved'],
    ['2001:1::1', undefined], ['2001:1::2', undefined], ['2001:3::1', undefined], ['2001:4:112::1', undefined], ['2001:20::1', undefined], ['2001:30::1', undefined],
    ['2001:200::1', undefined],
  ];
  for (const [address, kind] of kinds) t.equal(notPublicKind(address), kind, `${address}: ${kind ?? 'public'}`);
});
