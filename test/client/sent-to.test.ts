// sentTo: which server an error came from, by the request it carries, not by its message.
import t, { type Test } from 'tap';
import { createServer } from 'node:http';
import { httpGet, httpPut } from '../../src/client/http.js';
import { sentTo } from '../../src/client/sent-to.js';
import { DigestMismatchError, failedRequest, FleetError, toFleetError } from '../../src/errors.js';
import { serveOnLoopback } from '../helpers/loopback-server.js';

/** A server on 127.0.0.1 answering every request 500, as a failing origin or cache would: its base URL. */
function failing(t: Test): Promise<string> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 'FC_ERR_INTERNAL', message: 'disk error' })));
  });
  return serveOnLoopback(t, server);
}

/** What `request` rejected with, as a FleetError. */
async function failure(request: Promise<unknown>): Promise<FleetError> {
  return request.then(() => { throw new Error('the request succeeded'); }, toFleetError);
}

t.test("a cache whose URL holds the origin's as a prefix is not the origin; the origin's own requests are", async (t) => {
  // one reverse proxy in front of both (the origin under /fc, a region's cache under /fc-eu)
  const server = await failing(t);
  const origin = `${server}/fc`;
  const cache = `${server}/fc-eu`;
  const fromCache = await failure(httpGet(`${cache}/cas/sha256/${'a'.repeat(64)}`));
  t.match(fromCache.message, origin, "the cache's error names a URL that starts with the origin's");
  t.equal(sentTo(fromCache, origin), false, 'not sent to the origin');
  t.equal(sentTo(fromCache, cache), true, 'sent to the cache');
  const fromOrigin = await failure(httpPut(`${origin}/projects/p/runs/r`, '{}'));
  t.equal(sentTo(fromOrigin, origin), true, 'a PUT to the origin');
  t.equal(sentTo(fromOrigin, `${origin}/`), true, 'the origin given with a trailing slash');
  t.equal(sentTo(fromOrigin, cache), false);
  t.equal(sentTo(await failure(httpGet(origin)), origin), true, 'the base URL itself');
});

t.test("an error no request caused is sent to no server, whatever its message names; a mismatch names its request", async (t) => {
  const origin = 'http://127.0.0.1:4000';
  const local = toFleetError(new Error(`cannot read ${origin}.txt`));
  t.equal(sentTo(local, origin), false, 'a message naming the URL is not a request to it');
  const mismatch = new DigestMismatchError('sha256:aa', 'sha256:bb', failedRequest('PUT', `http://u:secret@127.0.0.1:40001/cas/sha256/aa?token=t0k`));
  t.equal(mismatch.message, 'PUT http://***:***@127.0.0.1:40001/cas/sha256/aa?…: digest mismatch: expected sha256:aa, got sha256:bb', 'credentials and query hidden');
  t.equal(sentTo(mismatch, origin), false, 'port 40001 is not port 4000');
  t.equal(sentTo(mismatch, 'http://127.0.0.1:40001'), true);
  t.same(Object.keys(mismatch.toJSON()).sort(), ['actual', 'code', 'expected', 'message'], 'the request is no field of an error body');
});
