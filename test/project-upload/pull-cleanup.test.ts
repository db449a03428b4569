// A pull whose unpack fails leaves its target as it found it (empty), not a partial tree that
// a later look would take for the project.
import t from 'tap';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { MANIFEST_FORMAT } from '../../src/project-upload/manifest.js';
import { pullProject } from '../../src/project-upload/pull.js';
import { serveOnLoopback } from '../helpers/loopback-server.js';

/** A tar whose first entries unpack and whose last one is refused (a file through a symlink). */
async function refusedLate(): Promise<Buffer> {
  const pack = tar.pack();
  pack.entry({ name: 'src/', type: 'directory', mode: 0o755 });
  pack.entry({ name: 'src/main.c', mode: 0o644 }, 'int main(void) { return 0; }\n');
  pack.entry({ name: 'README', mode: 0o644 }, 'hello\n');
  pack.entry({ name: 'link', type: 'symlink', linkname: 'src' });
  pack.entry({ name: 'link/evil.c', mode: 0o644 }, 'through a symlink\n');
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

t.test('an unpack that fails midway empties the target again', async (t) => {
  const tarBytes = await refusedLate();
  const body = gzipSync(tarBytes); // bases are stored gzipped
  const hex = createHash('sha256').update(body).digest('hex');
  const result = { digest: `sha256:${createHash('sha256').update(tarBytes).digest('hex')}`, size: tarBytes.length };
  const manifest = { format: MANIFEST_FORMAT, project: 'p', run: 'r', created: new Date().toISOString(), base: { id: 'b', digest: `sha256:${hex}`, size: body.length }, delta: null, result };
  const server = createServer((req, res) => {
    if (req.url === '/projects/p/runs/r') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(manifest));
    } else if (req.url === `/cas/sha256/${hex}`) {
      res.end(body);
    } else {
      res.writeHead(404).end();
    }
  });
  const from = await serveOnLoopback(t, server);
  const dir = join(t.testdir(), 'tree');
  await t.rejects(pullProject({ project: 'p', run: 'r', from, dir }), { code: 'FC_ERR_BAD_NAME' });
  t.ok(existsSync(dir), 'the target is still there');
  t.same(readdirSync(dir), [], 'and empty: src/, README and the symlink were removed');
});
