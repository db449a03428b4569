// A step of `npm run build` skips its work while its record (scripts/build-record.mjs) says
// nothing it read or wrote has changed: the second build of an unchanged tree is cheap, and
// a changed input, a changed output or another Node never leaves a stale output.
import { execFile } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t, { type Test } from 'tap';
import { REPO_ROOT } from '../helpers/processes.js';

interface RecordModule {
  isCurrent(record: string, key: object): boolean;
  startRecord(record: string): bigint;
  writeRecord(record: string, key: object, files: { inputs: string[]; outputs: string[] }, startedNs: bigint): boolean;
}
const { isCurrent, startRecord, writeRecord } = (await import(pathToFileURL(`${REPO_ROOT}scripts/build-record.mjs`).href)) as RecordModule;

/** A directory outside the repository: one under it (t.testdir()) sits in .tap/fixtures, which other tests change, and a record watches the directories above its inputs. */
function scratch(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'fleetcache-build-record-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Once the file system's clock (coarse: a few ms) is past `file`'s last change, by writing `probe`: a step starting in the same tick does not record it. */
function afterChangeOf(file: string, probe: string): void {
  const changedNs = statSync(file, { bigint: true }).ctimeNs;
  do writeFileSync(probe, '');
  while (statSync(probe, { bigint: true }).mtimeNs <= changedNs);
  rmSync(probe);
}

/** The mtime npm gives every file it unpacks (1985-10-26T08:15:00Z), in seconds. */
const NPM_MTIME = 499162500;

/** A step of one input and one output, recorded as built. */
function builtStep(dir: string, key: object) {
  const input = join(dir, 'src', 'input.txt');
  const output = join(dir, 'out.txt');
  const record = join(dir, 'out.built.json');
  mkdirSync(join(dir, 'src'));
  writeFileSync(input, 'version 1');
  utimesSync(input, NPM_MTIME, NPM_MTIME);
  afterChangeOf(join(dir, 'src'), join(dir, 'clock'));
  const startedNs = startRecord(record);
  writeFileSync(output, 'built from version 1');
  return { input, output, record, written: writeRecord(record, key, { inputs: [input], outputs: [output] }, startedNs) };
}

t.test('a step is current until an input, a directory holding one, an output, the key or Node changes', async (t) => {
  const key = { step: 'test', flags: ['-O2'] };
  const check = (name: string, change: (step: ReturnType<typeof builtStep>) => void) => {
    const step = builtStep(scratch(t), key);
    t.ok(step.written && isCurrent(step.record, key), `${name}: current once built`);
    change(step);
    t.notOk(isCurrent(step.record, key), `${name}: no longer current`);
  };
  const unchanged = builtStep(scratch(t), key);
  t.ok(isCurrent(unchanged.record, key) && isCurrent(unchanged.record, key), 'nothing changed: current, as often as asked');
  // npm's tarballs give every file one mtime, and a new version of a file may have the old size
  check('an input rewritten to the same size and mtime', ({ input }) => {
    writeFileSync(input, 'version 2');
    utimesSync(input, NPM_MTIME, NPM_MTIME);
  });
  check('a file added beside an input (what an import resolves to may change)', ({ input }) => writeFileSync(join(input, '..', 'input.js'), ''));
  check('an output modified', ({ output }) => appendFileSync(output, '!'));
  check('an output removed', ({ output }) => rmSync(output));
  check('another key', () => (key.flags = ['-O3']));
  const other = builtStep(scratch(t), {});
  const record = JSON.parse(readFileSync(other.record, 'utf8')) as { key: { node: string } };
  writeFileSync(other.record, JSON.stringify({ ...record, key: { ...record.key, node: 'v0.0.0' } }));
  t.notOk(isCurrent(other.record, {}), 'recorded by another Node: not current');
});

t.test('an input saved while the step ran: no record, the next build does the work', async (t) => {
  const dir = scratch(t);
  const input = join(dir, 'input.txt');
  writeFileSync(input, 'read by the step');
  const record = join(dir, 'out.built.json');
  writeFileSync(record, '{}');
  const startedNs = startRecord(record);
  t.notOk(existsSync(record), 'the old record is gone before the step runs');
  writeFileSync(input, 'saved after the step read it');
  t.notOk(writeRecord(record, {}, { inputs: [input], outputs: [] }, startedNs), 'not written');
  t.notOk(existsSync(record) || isCurrent(record, {}), 'no record');
});

/** scripts/build-native.mjs run as `npm run build` runs it, with `cc` as its compiler. */
function buildNative(out: string, cc: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [`${REPO_ROOT}scripts/build-native.mjs`, out], { env: { ...process.env, CC: cc, FLEETCACHE_REQUIRE_NATIVE: '1' }, timeout: 60_000 }, (err) => (err ? reject(err) : resolve()));
  });
}

t.test('build-native compiles again only when an input (the compiler) or its output changed', async (t) => {
  const dir = scratch(t);
  const calls = join(dir, 'calls');
  // the real compiler, counting its calls; the file is an input of the step (its compiler), and so is its directory
  mkdirSync(join(dir, 'bin'));
  const cc = join(dir, 'bin', 'counting-cc');
  const wrapper = (note: string) => writeFileSync(cc, `#!/bin/sh\n# ${note}\necho run >> '${calls}'\nexec cc "$@"\n`, { mode: 0o755 });
  wrapper('first');
  const out = join(dir, 'native', 'sendfile.node');
  const compilations = () => (existsSync(calls) ? readFileSync(calls, 'utf8').split('\n').filter(Boolean).length : 0);
  await buildNative(out, cc);
  t.equal(compilations(), 1, 'built');
  const built = statSync(out, { bigint: true });
  await buildNative(out, cc);
  t.equal(compilations(), 1, 'unchanged: not compiled again');
  t.equal(statSync(out, { bigint: true }).ctimeNs, built.ctimeNs, 'the addon left as it was');
  wrapper('second');
  await buildNative(out, cc);
  t.equal(compilations(), 2, 'a changed compiler: compiled again');
  appendFileSync(out, 'damaged');
  await buildNative(out, cc);
  t.equal(compilations(), 3, 'a modified addon: compiled again');
});

/** The files a record of the last `npm run build` (dist/NAME.built.json) lists. */
function recorded(name: string): string[] {
  return Object.keys((JSON.parse(readFileSync(`${REPO_ROOT}dist/${name}.built.json`, 'utf8')) as { files: Record<string, string> }).files);
}

t.test("the build's records list what each step read: the bundles' files and packages, all of src/, the type check's program", async (t) => {
  const has = (files: string[], pattern: RegExp) => files.some((file) => pattern.test(file));
  for (const name of ['cli', 'agent.mjs']) {
    const files = recorded(name);
    for (const pattern of [/^src\/errors\.ts$/, /^src\/cache\/server\.ts$/, /^scripts\/undici-core\.cjs$/, /node_modules\/undici\/lib\/dispatcher\/client-h1\.js$/, /node_modules\/undici\/package\.json$/, /^tsconfig\.json$/, /^scripts\/build-record\.mjs$/]) {
      t.ok(has(files, pattern), `${name}: ${pattern.source}`);
    }
  }
  t.ok(has(recorded('cli'), /^dist\/cli\/bin\.js$/), 'cli: its output');
  const types = recorded('types');
  t.ok(has(types, /^src\/errors\.ts$/) && has(types, /typescript\/lib\/lib\.es2023\.d\.ts$/) && has(types, /^tsconfig\.build\.json$/), 'types: src/, the .d.ts of TypeScript, its tsconfig');
  t.ok(has(recorded('patches'), /node_modules\/undici\/lib\/dispatcher\/client-h1\.js$/), 'patches: the file the patch changes');
});
