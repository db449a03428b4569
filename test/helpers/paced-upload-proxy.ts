// A stand-in cache that passes each request on to an upstream, and reads the bodies of the
// uploads it paces a few bytes at a time (passing them on as it reads them): a cache that
// accepted an upload and then takes it a trickle at a time, or not at all (`bytes: 0`).
import type { Test } from 'tap';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { PassThrough } from 'node:stream';
import { request, type Dispatcher } from 'undici';
import type { Pace } from './paced-proxy.js';
import { serveOnLoopback } from './loopback-server.js';

/** The request headers passed on: those of the upload itself, not of the connection. */
function passedOn(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of ['authorization', 'content-type', 'content-length', 'x-fleetcache-digest']) {
    const value = headers[name];
    if (typeof value === 'string') out[name] = value;
  }
  return out;
}

/** Starts the proxy in front of `upstream`; the bodies of the uploads to the paths `paced` picks are read at `pace`. Returns its URL. */
export async function pacedUploadProxy(t: Test, upstream: string, paced: (path: string) => boolean, pace: Pace): Promise<string> {
  const server = createServer((req, res) => {
    const path = req.url ?? '/';
    const body = new PassThrough();
    request(`${upstream}${path}`, { method: req.method as Dispatcher.HttpMethod, headers: passedOn(req.headers), body: req.method === 'GET' || req.method === 'HEAD' ? null : body })
      .then(async (up) => {
        const answer = Buffer.from(await up.body.arrayBuffer());
        res.writeHead(up.statusCode, { 'content-type': String(up.headers['content-type'] ?? 'application/json') }).end(answer);
      }, (err: Error) => res.destroy(err));
    if (!paced(path)) return void req.pipe(body);
    // paused mode: read(n) takes no more than the pace allows from what the socket buffered
    const step = setInterval(() => {
      const chunk = pace.bytes > 0 ? (req.read(Math.min(pace.bytes, req.readableLength)) as Buffer | null) : null;
      if (chunk) body.write(chunk);
      if (req.readableEnded) body.end();
    }, pace.everyMs);
    req.once('end', () => body.end());
    res.once('close', () => clearInterval(step));
    req.once('close', () => clearInterval(step));
  });
  return serveOnLoopback(t, server);
}
