// When answering the request that started a fill fails (fast-miss.ts's answer to a cold
// miss), the log line names that request as every other cache error log does: method, path
// (without the query string, which may carry a token) and a request id, besides the fill.
import t from 'tap';
import { request } from 'undici';
import { DiskStore } from '../../src/cache/disk-store.js';
import { Fill } from '../../src/cache/fill.js';
import { bodyServer, recordingLogger } from './harness.js';

interface Line { msg?: string; id?: string; reqId?: string; method?: string; url?: string; err?: string }

t.test('a failed first answer is logged with the method, path and request id of its request', async (t) => {
  const port = await bodyServer(t, 'a small body');
  const { log, lines } = recordingLogger<Line>();
  const store = new DiskStore(t.testdir(), 1024 ** 2, log);
  await store.open();
  const fill = new Fill(store, log, {
    id: 'http.v1/00/test',
    request: () => request(`http://127.0.0.1:${port}/object`),
    decide: (res) => ({ status: res.statusCode, headers: {} }),
  }, {
    leader: () => {
      throw new Error('the socket is gone');
    },
    leaderRequest: { method: 'GET', url: '/cas/sha256/abc?token=s3cret' },
  });
  await fill.done;
  const line = lines.find((l) => l.msg === 'answering the request that started a fill failed');
  t.match(line, { id: 'http.v1/00/test', method: 'GET', url: '/cas/sha256/abc', reqId: /^req-/, err: 'the socket is gone' });
  t.notMatch(JSON.stringify(lines), /s3cret/, 'not the query string');
});
