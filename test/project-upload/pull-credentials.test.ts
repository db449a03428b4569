// A pull's messages name the URL they read without the credentials in it (a --from
// http://user:password@cache/ that answers what is no run manifest).
import t from 'tap';
import { createServer } from 'node:http';
import { pullProject } from '../../src/project-upload/pull.js';
import { serveOnLoopback } from '../helpers/loopback-server.js';

t.test('a run manifest refused names its URL without the password in it', async (t) => {
  const server = createServer((_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ format: 'something else' }));
  });
  const { port } = new URL(await serveOnLoopback(t, server));
  const pulled = pullProject({ from: `http://alice:hunter2@127.0.0.1:${port}`, project: 'p', run: 'r', dir: t.testdir() });
  await t.rejects(pulled, { code: 'FC_ERR_BAD_REQUEST', message: `http://***:***@127.0.0.1:${port}/projects/p/runs/r: not a run manifest` });
  await pulled.catch((err: Error) => t.notMatch(err.message, /hunter2/, 'no password'));
});
