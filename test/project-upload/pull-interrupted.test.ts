// A pull stopped by SIGTERM or SIGINT while the base downloads leaves nothing in TMPDIR.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { MANIFEST_FORMAT } from '../../src/project-upload/manifest.js';
import { cliArgs } from '../helpers/processes.js';

const hex = 'a'.repeat(64);

/** An origin that answers the manifest, then sends part of the base and stalls. */
async function stallingOrigin(t: Test): Promise<string> {
  const body = gzipSync(randomBytes(4 << 20), { level: 0 });
  const manifest = {
    format: MANIFEST_FORMAT,
    project: 'p',
    run: 'r',
    created: new Date().toISOString(),
    base: { id: 'b', digest: `sha256:${hex}`, size: body.length },
    delta: null,
    result: { digest: `sha256:${hex}`, size: 1 },
  };
  const server = createServer((req, res) => {
    if (req.url === '/projects/p/runs/r') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(manifest));
    } else {
      res.writeHead(200, { 'content-length': body.length });
      res.write(body.subarray(0, body.length >> 1)); // and never the rest
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  t.test(`${signal} during the base download`, async (t) => {
    const url = await stallingOrigin(t);
    const dir = t.testdir();
    const tmp = join(dir, 'tmp');
    mkdirSync(tmp);
    const child = spawn(process.execPath, cliArgs(['pull', '--project', 'p', '--run', 'r', '--from', url, join(dir, 'out')]), {
      env: { ...process.env, TMPDIR: tmp },
      stdio: 'ignore',
    });
    t.teardown(() => child.kill('SIGKILL'));
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, sig) => resolve(sig)));
    // wait until the download has started writing
    const started = Date.now();
    const ours = (): string[] => readdirSync(tmp).filter((d) => d.startsWith('fleetcache-'));
    const partial = (): boolean => ours().some((d) => readdirSync(join(tmp, d)).some((f) => f.endsWith('.partial')));
    while (!partial()) {
      if (Date.now() - started > 30_000) throw new Error('the pull never started its download');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    child.kill(signal);
    t.equal(await exited, signal, `the pull ends by ${signal}`);
    t.same(ours(), [], 'nothing left in TMPDIR'); // (tsx keeps its cache there too)
  });
}
