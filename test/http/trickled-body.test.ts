// A GET (or HEAD) sent with a body that comes a few bytes at a time, for ever: no route reads
// it, so the connection is closed soon after the answer (unread-body.ts, closeAfterUnreadBodies),
// by the origin and by the cache, hits of the cache's own fast path included. Kept alive,
// node read the body to get to the next request, each byte putting the idle limit off, and a
// client with no token held the connection as long as it liked.
import { connect } from 'node:net';
import t from 'tap';
import { startCache } from '../cache/harness.js';
import { startOrigin, uploadBlob } from '../helpers/origin.js';

/** How long a client trickles its body at most: far past the server's linger after an answer (1 s). */
const TRICKLE_MS = 10_000;

/**
 * Sends `head` to the server of `url`, then `piece` every 200 ms (a body that never ends),
 * until the server closes the connection or TRICKLE_MS pass; resolves to what was answered
 * and how long after the answer's first byte the connection was closed (undefined: still open).
 */
function trickle(url: string, head: string, piece: string): Promise<{ answer: string; closedAfterMs: number | undefined }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname, () => socket.write(head));
    let answer = '';
    let answeredAt: number | undefined;
    const timer = setInterval(() => socket.writable && socket.write(piece), 200);
    const end = (closed: boolean): void => {
      clearInterval(timer);
      clearTimeout(giveUp);
      socket.destroy();
      resolve({ answer, closedAfterMs: closed && answeredAt !== undefined ? Date.now() - answeredAt : undefined });
    };
    const giveUp = setTimeout(() => end(false), TRICKLE_MS);
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      answeredAt ??= Date.now();
      answer += chunk;
    });
    socket.once('close', () => end(true)).once('error', () => end(true));
  });
}

t.test('a GET or HEAD whose body never ends is answered, then its connection closed', async (t) => {
  const dir = t.testdir({ origin: {}, cache: {} });
  const origin = await startOrigin(t, { dataDir: `${dir}/origin` });
  const hex = await uploadBlob(origin.url, Buffer.from('a small blob'));
  const cache = await startCache(t, { upstream: origin.url }, `${dir}/cache`);
  // a hit from here on (answered from memory by the cache's fast path: fast-hit.ts)
  await fetch(`${cache.url}/cas/sha256/${hex}`).then((res) => res.arrayBuffer());
  const chunked = (method: string, path: string) => [`${method} ${path} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n`, '1\r\na\r\n'] as const;
  const declared = (method: string, path: string) => [`${method} ${path} HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n`, 'a'] as const;
  const cases = [
    ['origin', origin.url, ...chunked('GET', '/-/healthz')],
    ['origin', origin.url, ...declared('HEAD', `/cas/sha256/${hex}`)],
    ['cache', cache.url, ...chunked('GET', '/-/healthz')],
    ['cache', cache.url, ...declared('GET', `/cas/sha256/${hex}`)],
  ] as const;
  const endings = await Promise.all(cases.map(([, url, head, piece]) => trickle(url, head, piece)));
  for (const [i, [server, , head]] of cases.entries()) {
    const { answer, closedAfterMs } = endings[i]!;
    const what = `${server}: ${head.split('\r\n')[0]} (${head.split('\r\n')[2]})`;
    t.match(answer, /^HTTP\/1\.1 200 /, `${what}: answered`);
    t.ok(closedAfterMs !== undefined && closedAfterMs < TRICKLE_MS / 2, `${what}: closed ${closedAfterMs ?? 'never'} ms after the answer`);
  }
});
