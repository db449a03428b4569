// An HTTP proxy on 127.0.0.1 in front of a real server (the origin) that changes the body of
// chosen answers: a cache whose copy is damaged, or that serves another object, as a client
// downloading through it meets it. Requests and other answers pass as they are.
import http from 'node:http';
import type { Test } from 'tap';
import { serveOnLoopback } from './loopback-server.js';

/** The body to send instead of `body` (the upstream's 2xx answer to GET `path`); `body` itself to pass it. */
type Tamper = (path: string, body: Buffer) => Buffer;

/** Flips the middle byte of `body`: the same size, another digest. */
export function flipped(body: Buffer): Buffer {
  const copy = Buffer.from(body);
  copy[copy.length >> 1]! ^= 0xff;
  return copy;
}

/** The proxy's base URL (http://127.0.0.1:PORT); stopped in `t`'s teardown. */
export function startTamperingProxy(t: Test, upstream: string, tamper: Tamper): Promise<string> {
  const server = http.createServer((req, res) => {
    const path = req.url ?? '/';
    const out = http.request(new URL(path, upstream), { method: req.method, headers: req.headers }, (answer) => {
      const chunks: Buffer[] = [];
      answer.on('data', (chunk: Buffer) => chunks.push(chunk));
      answer.on('end', () => {
        const status = answer.statusCode ?? 502;
        const got = Buffer.concat(chunks);
        const body = req.method === 'GET' && status >= 200 && status < 300 ? tamper(path, got) : got;
        // a HEAD's Content-Length is the object's, with no body to count
        res.writeHead(status, req.method === 'HEAD' ? answer.headers : { ...answer.headers, 'content-length': String(body.length) }).end(body);
      });
    });
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  return serveOnLoopback(t, server);
}
