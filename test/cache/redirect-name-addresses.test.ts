// A redirect target named by a host name: every address the name resolves to is checked
// before any is connected to (redirect-targets.ts), so a name with one public and one
// loopback address is refused, whichever comes first. The name resolves so in the cache's
// process only, through its real resolver and a hosts file of its own (private-hosts.ts).
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { startServerProcess } from '../helpers/processes.js';
import { privateHostsUnavailable, underPrivateHosts } from '../helpers/private-hosts.js';
import { serveOnLoopback } from '../helpers/loopback-server.js';

async function listen(t: Test, handler: Parameters<typeof createServer>[1]): Promise<number> {
  return Number(new URL(await serveOnLoopback(t, createServer(handler))).port);
}

t.test('a redirect to a name resolving to a public and a loopback address: refused under privateRedirects: refuse, followed under allow', { skip: privateHostsUnavailable() }, async (t) => {
  const body = randomBytes(4096);
  const hex = createHash('sha512').update(body).digest('hex');
  const name = `public-and-loopback-${randomBytes(4).toString('hex')}.test`;
  let storageAsked = 0;
  const storagePort = await listen(t, (_req, res) => {
    storageAsked++;
    res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  // 203.0.113.7 (TEST-NET-3): public to the check, routed nowhere, so a broken check sends no traffic off the machine; only the loopback address has the storage behind it
  const upstreamPort = await listen(t, (_req, res) => void res.writeHead(302, { location: `http://${name}:${storagePort}/s3/sha512/${hex}?X-Amz-Signature=s3cret` }).end());
  const dir = t.testdir({ refuse: {}, allow: {} });
  const startCache = async (policy: 'refuse' | 'allow') => {
    writeFileSync(join(dir, policy, 'cache.yaml'), `upstream: http://127.0.0.1:${upstreamPort}/\nprivateRedirects: ${policy}\n`);
    const args = ['cache', '-c', join(dir, policy, 'cache.yaml'), '--listen', '127.0.0.1:0', '--data', join(dir, policy, 'data')];
    return startServerProcess(t, args, { FLEETCACHE_LOG_LEVEL: 'warn' }, underPrivateHosts(join(dir, policy), name, ['203.0.113.7', '127.0.0.1']));
  };

  const refusing = await startCache('refuse');
  const refused = await request(`${refusing.url}/sha512/${hex}`);
  const text = await refused.body.text();
  t.equal(refused.statusCode, 502, 'a 502');
  t.match(JSON.parse(text), { code: 'FC_ERR_UPSTREAM', message: /a redirect to a loopback address, refused/ }, 'naming the loopback address among the name\'s');
  t.equal(storageAsked, 0, 'the target was never asked');
  await refusing.stop();

  // the same name in a cache that allows every address: it resolves there, and reaches the storage
  const allowing = await startCache('allow');
  const followed = await request(`${allowing.url}/sha512/${hex}`);
  t.same([followed.statusCode, Buffer.from(await followed.body.arrayBuffer()).equals(body)], [200, true], 'followed: the blob');
  t.equal(storageAsked, 1, 'from the storage, through the name');
});
