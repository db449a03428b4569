// What a power loss cannot take back: a stored blob, a name record, and the directories
// made for them. Checked by the system calls themselves (strace, from Debian): every new
// directory's parent, the record file and the directory it was renamed in are fsynced.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { REPO_ROOT } from '../helpers/processes.js';

/** Runs `code` (an ES module body, in the repository) under strace; the paths fsync was called on. */
function fsyncedPaths(code: string, trace: string): string[] {
  execFileSync('strace', ['-f', '-qq', '-y', '-e', 'trace=fsync,fdatasync', '-o', trace, process.execPath, '--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: REPO_ROOT, stdio: 'ignore', timeout: 60_000,
  });
  const out = readFileSync(trace, 'utf8');
  return [...out.matchAll(/f(?:data)?sync\(\d+<([^>]+)>\) = 0/g)].map((m) => m[1]!);
}

/** A module body that opens a DiskBlobStore `blobs` on `dir` and puts "durable" in it, then runs `rest`. */
function afterFirstPut(dir: string, rest: string): string {
  return `
    import { Readable } from 'node:stream';
    import { DiskBlobStore } from './src/store/disk.ts';
    import { NameStore } from './src/store/names.ts';
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
