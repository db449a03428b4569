import t, { type Test } from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { httpExists, httpGet, httpGetJson, httpPut } from '../../src/client/http.js';

/** The catalogued error each answer becomes (src/client/http.ts), and the server's error body. */
const ANSWERS = [
  { status: 401, code: 'FC_ERR_UNAUTHORIZED', server: { code: 'FC_ERR_UNAUTHORIZED', message: 'a bearer token is required' } },
  { status: 403, code: 'FC_ERR_FORBIDDEN', server: { code: 'FC_ERR_FORBIDDEN', message: 'the token is not accepted' } },
  { status: 500, code: 'FC_ERR_UPSTREAM', server: { code: 'FC_ERR_INTERNAL', message: 'internal error (request 7)' } },
  { status: 502, code: 'FC_ERR_UPSTREAM', server: { code: 'FC_ERR_UPSTREAM', message: 'the upstream broke the connection' } },
] as const;

/** A server on 127.0.0.1 answering `/<status>` with that status and a fleetcache error body (none to HEAD). */
async function answering(t: Test): Promise<string> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const status = Number(req.url!.slice(1));
      const answer = ANSWERS.find((a) => a.status === status);
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer ? answer.server : { ok: true }));
    });
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  t.teardown(() => new Promise<void>((res) => { server.closeAllConnections(); server.close(() => res()); }));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

t.test('httpExists: 2xx true, 404 false, any other answer its catalogued error, never a crash', async (t) => {
  const url = await answering(t);
  t.equal(await httpExists(`${url}/200`), true);
  t.equal(await httpExists(`${url}/404`), false);
  for (const { status, code } of ANSWERS) {
    // HEAD answers carry no body: the status makes the error.
    await t.rejects(httpExists(`${url}/${status}`), { code, message: `HEAD ${url}/${status}: HTTP ${status}` }, `HEAD ${status}`);
  }
});

t.test('GET and PUT error answers: the catalogued error with the server message', async (t) => {
  const url = await answering(t);
  for (const { status, code, server } of ANSWERS) {
    const message = `${url}/${status}: HTTP ${status}: ${server.message}`;
    await t.rejects(httpGet(`${url}/${status}`), { code, message: `GET ${message}` }, `GET ${status}`);
    await t.rejects(httpGetJson(`${url}/${status}`), { code, message: `GET ${message}` }, `GET JSON ${status}`);
    await t.rejects(httpPut(`${url}/${status}`, 'body'), { code, message: `PUT ${message}` }, `PUT ${status}`);
  }
  t.same(await httpGetJson(`${url}/200`), { ok: true });
});

t.test('credentials in a URL never appear in an error message', async (t) => {
  const url = await answering(t);
  const withSecret = url.replace('http://', 'http://user:s3cret@');
  await t.rejects(httpGet(`${withSecret}/502`), { message: `GET ${url.replace('http://', 'http://***:***@')}/502: HTTP 502: the upstream broke the connection` }, 'an error answer');
  await t.rejects(httpGet('http://user:s3cret@127.0.0.1:1/x'), { message: /^GET http:\/\/\*\*\*:\*\*\*@127\.0\.0\.1:1\/x: / }, 'a connection that failed');
});
