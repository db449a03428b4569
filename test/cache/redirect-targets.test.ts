// Where a redirect may lead: an IPv6 address that reaches an IPv4 one by design (NAT64,
// 6to4, IPv4-compatible) is what that IPv4 is, since a gateway connects to it.
import t from 'tap';
import { notPublicKind } from '../../src/cache/redirect-targets.js';

t.test('IPv6 addresses embedding an IPv4 one are checked as that IPv4', async (t) => {
  const kinds: ReadonlyArray<readonly [string, string | undefined]> = [
    ['64:ff9b::7f00:1', 'loopback'], ['64:ff9b::127.0.0.1', 'loopback'], ['64:ff9b:0:0:0:0:a9fe:a9fe', 'link-local'], ['64:ff9b::a00:1', 'private'],
    ['2002:7f00:1::', 'loopback'], ['2002:a9fe:a9fe::1', 'link-local'], ['2002:c0a8:1::', 'private'],
    ['::7f00:1', 'loopback'], ['::169.254.169.254', 'link-local'],
    ['64:ff9b:1::a00:1', 'private'],
    // as they were: the IPv6 addresses themselves, public IPv4 behind NAT64 or 6to4
    ['::1', 'loopback'], ['::', 'unspecified'], ['::ffff:10.0.0.1', 'private'], ['fe80::1%eth0', 'link-local'],
    ['64:ff9b::808:808', undefined], ['2002:808:808::1', undefined], ['2606:4700::1111', undefined], ['1:2:3:4:5:6:7:8', undefined],
  ];
  for (const [address, kind] of kinds) t.equal(notPublicKind(address), kind, `${address}: ${kind ?? 'public'}`);
});
