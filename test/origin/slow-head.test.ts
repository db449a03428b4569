// The origin lets go of a connection whose request head does not arrive whole within
// limits.clientHeaderTimeout (a silent one, a head sent a byte at a time, a kept-alive one's
// next head, which empty lines sent before it do not put off), but not of a body that takes
// longer; limits.maxConnections closes a connection over it as it comes.
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { originOptionsFrom } from '../../src/cli/origin.js';
import { parseConfig } from '../../src/config/load.js';
import { OriginConfigSchema, type OriginOptions } from '../../src/origin/config.js';
import { startOrigin, TEST_TOKEN, uploadBlob } from '../helpers/origin.js';
import { checkCapOfTwo, checkEmptyLines, checkSlowHeads, slowGet, slowPut } from '../helpers/slow-client.js';

const LIMIT_MS = 1000;

/** The connection limits the CLI gives an origin whose configuration file has these `limits:` lines. */
function withLimits(t: Test, limits: string): Pick<OriginOptions, 'clientHeaderTimeoutMs' | 'maxConnections'> {
  const dir = t.testdir({ token: `${TEST_TOKEN}\n` });
  const config = parseConfig(OriginConfigSchema, `limits:\n${limits}`, 'origin.yaml');
  const { options } = originOptionsFrom(config, { data: join(dir, 'data'), tokenFile: join(dir, 'token') });
  return { clientHeaderTimeoutMs: options.clientHeaderTimeoutMs!, ...(options.maxConnections === undefined ? {} : { maxConnections: options.maxConnections }) };
}

t.test('a late request head is cut, a slow body is not', async (t) => {
  const origin = await startOrigin(t, withLimits(t, '  clientHeaderTimeout: 1s\n'));
  const blob = Buffer.alloc(32 * 1024 * 1024, 7);
  const hex = await uploadBlob(origin.url, blob);

  // all at once, to keep the file short; each checked in its own subtest
  checkSlowHeads(t, origin.url, LIMIT_MS, { 'an answer': '/-/healthz' });
  const upload = slowPut(origin.url, origin.token, Buffer.from('slow body, one byte at a time'), 2500);
  const download = slowGet(`${origin.url}/cas/sha256/${hex}`, 2500);
  t.test('an upload whose body takes longer than the limit', async (t) => {
    t.match((await upload).answer, /^HTTP\/1\.1 201 /, 'stored');
  });
  t.test('a download read more slowly than the limit', async (t) => {
    t.equal(await download, hex, 'whole');
  });
});

t.test('a kept-alive connection that sends empty lines only is cut by the keep-alive limit plus the head limit', async (t) => {
  const origin = await startOrigin(t, withLimits(t, '  clientHeaderTimeout: 1s\n'));
  checkEmptyLines(t, origin.app.server, origin.url, LIMIT_MS, { 'an answer': '/-/healthz' });
});

t.test('limits.maxConnections: a connection over it is closed as it comes', async (t) => {
  const limits = withLimits(t, '  maxConnections: 2\n');
  t.equal(limits.clientHeaderTimeoutMs, 15_000, 'the head limit: 15 s by default');
  const origin = await startOrigin(t, limits);
  await checkCapOfTwo(t, origin.url);
});
