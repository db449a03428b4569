// A request that arrives while a server stops (on a connection it had open: the drain takes
// no new one) is answered 503 with the catalogued JSON error every other failure has,
// FC_ERR_UNAVAILABLE, and the connection closed; fastify's own answer had no code.
import { connect } from 'node:net';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import t, { type Test } from 'tap';
import { serveUntilSignal } from '../../src/cli/listen.js';
import { DEFAULT_MAX_SIZE, DEFAULT_TIMEOUTS } from '../../src/cache/config.js';
import { buildCacheServer } from '../../src/cache/server.js';
import { buildOriginServer } from '../../src/origin/server.js';
import { TEST_TOKEN } from '../helpers/origin.js';
import { statusOf } from '../helpers/raw-http.js';
import { eventually } from '../helpers/wait.js';

/**
 * Sends the head of a GET up to its last line, stops `app` with SIGTERM (as serveUntilSignal
 * is told by the system), then ends the head: the request arrives during the drain. Resolves
 * with the whole answer, read until the server closes the connection: none when the server
 * had not read the first part yet when it stopped (a connection it took for idle, closed at
 * once, as it must), so up to five servers are tried, each given a moment to read it.
 */
async function askWhileStopping(build: () => Promise<FastifyInstance>): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    const answer = await askOneWhileStopping(await build());
    if (answer !== '' || attempt === 5) return answer;
  }
}

async function askOneWhileStopping(app: FastifyInstance): Promise<string> {
  const served = serveUntilSignal(app, '127.0.0.1:0', { announce: false, shutdownTimeoutMs: 5_000 });
  await eventually('the server listens', () => app.server.listening);
  const { port } = app.server.address() as { port: number };
  const socket = connect(port, '127.0.0.1');
  let answer = '';
  socket.setEncoding('utf8').on('data', (chunk: string) => (answer += chunk));
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  socket.write(`GET /-/healthz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`);
  await new Promise((resolve) => setTimeout(resolve, 100));
  process.emit('SIGTERM', 'SIGTERM');
  // the drain has closed the listening socket: the server is stopping
  await eventually('the server stops listening', () => !app.server.listening);
  socket.write('\r\n');
  await ended;
  await served;
  return answer;
}

function checkAnswer(t: Test, answer: string): void {
  t.equal(statusOf(answer), 503, answer.split('\r\n')[0] ?? '(no answer)');
  t.match(answer, /\r\nconnection: close\r\n/i, 'the connection is closed after it');
  const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
  t.equal(body.code, 'FC_ERR_UNAVAILABLE', 'the catalogued code');
  t.match(body.message, /stopping/, 'says why');
  t.type(body.requestId, 'string', 'with the request id, as every error answer');
}

t.test('the origin', async (t) => {
  const dir = t.testdir();
  checkAnswer(t, await askWhileStopping(() => buildOriginServer({ dataDir: join(dir, 'data'), tokens: [TEST_TOKEN], logLevel: false })));
});

t.test('the cache', async (t) => {
  const dir = t.testdir();
  checkAnswer(t, await askWhileStopping(() => buildCacheServer({ region: 'r', upstream: 'http://127.0.0.1:9', dataDir: join(dir, 'data'), maxSize: DEFAULT_MAX_SIZE, timeouts: DEFAULT_TIMEOUTS, mirrors: new Map(), logLevel: 'silent' })));
});
