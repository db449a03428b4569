// A stand-in cache that passes each GET on to an upstream and sends the bodies of the paths
// it paces a few bytes at a time: a cache that trickles (a byte now and then, each well
// within any idle timeout), or a healthy link that is merely slow. An upload (PUT) is passed
// on as it comes, with its credentials, and answered as the upstream answers.
import type { Test } from 'tap';
import { createServer } from 'node:http';
import { request } from 'undici';
import { serveOnLoopback } from './loopback-server.js';

export interface Pace {
  /** Bytes sent at each step. */
  readonly bytes: number;
  /** The time between two steps. */
  readonly everyMs: number;
}

/** Starts the proxy in front of `upstream`; answers for the paths `paced` picks are sent at `pace`. Returns its URL. */
export async function pacedProxy(t: Test, upstream: string, paced: (path: string) => boolean, pace: Pace): Promise<string> {
  const server = createServer((req, res) => {
    const path = req.url ?? '/';
    const put = req.method === 'PUT'
      ? { method: 'PUT' as const, body: req, headers: Object.fromEntries(['authorization', 'content-length'].flatMap((name) => req.headers[name] ? [[name, req.headers[name]!]] : [])) }
      : {};
    request(`${upstream}${path}`, put).then(async (up) => {
      const body = Buffer.from(await up.body.arrayBuffer());
      res.writeHead(up.statusCode, { 'content-type': String(up.headers['content-type'] ?? 'application/octet-stream'), 'content-length': String(body.length) });
      if (up.statusCode !== 200 || !paced(path)) return void res.end(body);
      let sent = 0;
      const step = setInterval(() => {
        res.write(body.subarray(sent, (sent += pace.bytes)));
        if (sent < body.length) return;
        clearInterval(step);
        res.end();
      }, pace.everyMs);
      res.once('close', () => clearInterval(step));
    }, (err: Error) => res.destroy(err));
  });
  return serveOnLoopback(t, server);
}
