// An origin that answers a few JSON paths and, for anything else (a blob), sends half of a
// 4 MiB gzip body and stalls: a command is caught in the middle of a download.
import type { Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { gzipSync } from 'node:zlib';
import { serveOnLoopback } from '../helpers/loopback-server.js';

const body = gzipSync(randomBytes(4 << 20), { level: 0 });
/** The blob's size, for the records that point at it. */
export const STALLED_SIZE = body.length;

/** `json`: URL path prefix → body answered as JSON. Returns the origin's URL. */
export async function stallingOrigin(t: Test, json: Record<string, unknown>): Promise<string> {
  const server = createServer((req, res) => {
    // a push asks what its token is taken for before anything else (push.ts checkWriteToken)
    const answer = Object.entries({ '/-/token': { scope: 'write' }, ...json }).find(([prefix]) => req.url?.startsWith(prefix));
    if (answer) {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(answer[1]));
    } else if (req.method === 'HEAD') {
      res.writeHead(200, { 'content-length': body.length }).end(); // a push asks whether a base is there
    } else {
      res.writeHead(200, { 'content-length': body.length });
      res.write(body.subarray(0, body.length >> 1)); // and never the rest
    }
  });
  return serveOnLoopback(t, server);
}
