// What a power loss cannot take back: a stored blob, a name record, and the directories
// made for them. Checked by the system calls themselves (strace, from Debian): every new
// directory's parent, the record file and the directory it was renamed in are fsynced.
import path from 'node:path';
import t from 'tap';
import { LOCK_ID } from '../../src/store/dir-lock.js';
import { treeModule } from '../helpers/processes.js';
import { straced } from '../helpers/strace.js';

/** Runs `code` under strace; the paths fsync was called on. */
function fsyncedPaths(code: string, trace: string): string[] {
  const out = straced(code, trace, ['-e', 'trace=fsync,fdatasync']);
  return [...out.matchAll(/f(?:data)?sync\(\d+<([^>]+)>\) = 0/g)].map((m) => m[1]!);
}

/** A module body that opens a DiskBlobStore `blobs` on `dir` and puts "durable" in it, then runs `rest`. */
function afterFirstPut(dir: string, rest: string): string {
  return `
    import { Readable } from 'node:stream';
    import { DiskBlobStore } from '${treeModule('src/store/disk')}';
    import { NameStore } from '${treeModule('src/store/names')}';
    const blobs = new DiskBlobStore(${JSON.stringify(dir)});
    await blobs.open();
    await blobs.put(Readable.from([Buffer.from('durable')]));
    ${rest}
  `;
}

t.test('a blob in a new shard and a name in new directories are durable, directories too', async (t) => {
  const scratch = t.testdir();
  const dir = path.join(scratch, 'data');
  const synced = fsyncedPaths(afterFirstPut(dir, `
    const names = new NameStore(${JSON.stringify(dir)});
    await names.open();
    await names.put(['artifacts', 'run', 'job', 'out.txt'], { digest: 'sha256:x', size: 7, created: 0 });
  `), path.join(scratch, 'strace.txt'));
  // sha256("durable") = 54da...: its shard is 54.
  const casAlgo = path.join(dir, 'cas.v1', 'sha256');
  t.ok(synced.includes(casAlgo), 'the new shard\'s parent');
  t.ok(synced.includes(path.join(casAlgo, '54')), 'the shard, after the rename into it');
  const names = path.join(dir, 'names.v1');
  for (const d of [names, path.join(names, 'artifacts'), path.join(names, 'artifacts', 'run'), path.join(names, 'artifacts', 'run', 'job')]) {
    t.ok(synced.includes(d), `${path.relative(dir, d)}: synced`);
  }
  t.ok(synced.some((p) => p.startsWith(path.join(dir, 'tmp', 'rec-'))), 'the record file itself, before its rename');
});

t.test('opening a new store makes its directories durable: cas.v1/<algo>, names.v1', async (t) => {
  const scratch = t.testdir();
  const dir = path.join(scratch, 'data');
  // Each store opened alone on a new data directory: the parents of the directories it makes are synced.
  for (const [store, parents] of [['DiskBlobStore', [dir, path.join(dir, 'cas.v1')]], ['NameStore', [dir]]] as const) {
    const synced = fsyncedPaths(`
      import { DiskBlobStore } from '${treeModule('src/store/disk')}';
      import { NameStore } from '${treeModule('src/store/names')}';
      await new ${store}(${JSON.stringify(path.join(dir, store))}).open();
    `, path.join(scratch, `strace-${store}.txt`));
    for (const parent of parents) {
      const under = path.join(dir, store, path.relative(dir, parent));
      t.ok(synced.includes(under), `${store}: ${path.relative(scratch, under)} synced`);
    }
  }
});

t.test('a second put of a stored blob syncs its shard before it answers', async (t) => {
  const scratch = t.testdir();
  const dir = path.join(scratch, 'data');
  // The first put may still be between its link and its sync when the second answers
  // "already stored": the second syncs the shard itself.
  const synced = fsyncedPaths(afterFirstPut(dir, `
    const again = await blobs.put(Readable.from([Buffer.from('durable')]));
    if (again.created) throw new Error('the second put created the blob');
  `), path.join(scratch, 'strace.txt'));
  const shard = path.join(dir, 'cas.v1', 'sha256', '54');
  t.equal(synced.filter((p) => p === shard).length, 2, 'the shard is synced by each put');
});

t.test('a put that finds a new shard another put is making answers only once the shard is synced into its parent', async (t) => {
  const scratch = t.testdir();
  const dir = path.join(scratch, 'data');
  const casAlgo = path.join(dir, 'cas.v1', 'sha256');
  const answered = (put: string) => path.join(scratch, `answered-${put}`);
  // Two puts of one new blob at once: one makes the shard and syncs its parent, slowed
  // here (strace delays every fsync of the parent); the other finds the shard there. Each
  // marks its answer with a look for a file, which the trace orders against the sync.
  const code = `
    import { existsSync } from 'node:fs';
    import { Readable } from 'node:stream';
    import { DiskBlobStore } from '${treeModule('src/store/disk')}';
    const blobs = new DiskBlobStore(${JSON.stringify(dir)});
    await blobs.open();
    const put = (name) => blobs.put(Readable.from([Buffer.from('durable')])).then(() => existsSync(${JSON.stringify(path.join(scratch, 'answered-'))} + name));
    await Promise.all([put('a'), put('b')]);
  `;
  const lines = straced(code, path.join(scratch, 'strace.txt'), [
    '-P', casAlgo, '-P', answered('a'), '-P', answered('b'),
    '-e', 'trace=fsync,access,faccessat,faccessat2', '-e', 'inject=fsync:delay_enter=300000',
  ]).split('\n');
  // Only the parent of the shard is fsynced among the traced paths; its completion (delayed on entry) is its "= 0".
  const synced = lines.findIndex((l) => /fsync(\(\d+<|.*resumed).*= 0/.test(l));
  t.ok(synced >= 0, 'the new shard\'s parent is synced');
  for (const put of ['a', 'b']) {
    const answer = lines.findIndex((l) => l.includes(answered(put)));
    t.ok(answer > synced, `put ${put} answers after that sync`);
  }
});

t.test('a prune syncs the removal of the names it deletes before it deletes their blobs', async (t) => {
  const scratch = t.testdir();
  const dir = path.join(scratch, 'data');
  // sha256("durable") = 54da...: an artifact of those bytes, expired, and a prune.
  const code = `
    import { Readable } from 'node:stream';
    import { buildOrigin } from '${treeModule('src/origin/server')}';
    import { Retention } from '${treeModule('src/origin/retention')}';
    import { RECENT_MS } from '${treeModule('src/origin/references')}';
    const { app, context } = await buildOrigin({ dataDir: ${JSON.stringify(dir)}, tokens: ['t'.repeat(24)], logLevel: false });
    const { digest, size } = await context.store.put(Readable.from([Buffer.from('durable')]));
    await context.names.put(['artifacts', 'r', 'job', 'out.txt'], { digest: digest.algo + ':' + digest.hex, size, created: 0 });
    const report = await new Retention(context, { maxAgeMs: 86_400_000, keepBases: 3 }).prune({ now: Date.now() + RECENT_MS + 60_000 });
    if (report.blobs !== 1) throw new Error('the prune deleted ' + report.blobs + ' blobs');
    await app.close();
  `;
  const lines = straced(code, path.join(scratch, 'strace.txt'), ['-e', 'trace=fsync,unlink,unlinkat']).split('\n');
  const record = path.join(dir, 'names.v1', 'artifacts', 'r', 'job');
  const recordRemoved = lines.findIndex((l) => /unlink/.test(l) && l.includes(path.join(record, 'out.txt')));
  const blobRemoved = lines.findIndex((l) => /unlink/.test(l) && l.includes(path.join(dir, 'cas.v1', 'sha256', '54', '')));
  t.ok(recordRemoved >= 0 && blobRemoved > recordRemoved, 'the record is removed, then the blob');
  const synced = lines.findIndex((l, i) => i > recordRemoved && l.includes(`fsync(`) && l.includes(`<${record}>`) && l.endsWith('= 0'));
  t.ok(synced > recordRemoved && synced < blobRemoved, 'the record\'s directory is synced in between');
});

t.test('the data directory\'s lock secret is synced before it is linked into place', async (t) => {
  const scratch = t.testdir();
  const dir = path.join(scratch, 'data');
  // A power loss after the link but before the data reached the disk left .lock-id empty: the
  // secret then was "", the lock's name one any local user can compute and take first.
  const lines = straced(`
    import { lockDataDir } from '${treeModule('src/store/dir-lock')}';
    await (await lockDataDir(${JSON.stringify(dir)})).release();
  `, path.join(scratch, 'strace.txt'), ['-e', 'trace=fsync,fdatasync,link,linkat']).split('\n');
  const temp = path.join(dir, `${LOCK_ID}.`);
  const linked = lines.findIndex((l) => /link(at)?\(/.test(l) && l.includes(temp));
  const synced = lines.findIndex((l) => /f(data)?sync\(\d+</.test(l) && l.includes(`<${temp}`) && l.endsWith('= 0'));
  t.ok(linked >= 0, 'the secret is linked into place');
  t.ok(synced >= 0 && synced < linked, 'its temp file is synced before');
  const dirSynced = lines.findIndex((l, i) => i > linked && /f(data)?sync\(\d+</.test(l) && l.includes(`<${dir}>`) && l.endsWith('= 0'));
  t.ok(dirSynced > linked, 'its directory is synced after the link (an origin token lost would lock out its clients)');
});
