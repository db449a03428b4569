// A push or pack stopped by SIGTERM or SIGINT leaves no partial file beside its outputs: not
// in the base cache (a base-sized .partial nothing would ever remove), not beside an -o file;
// nor a repack script running on (in its own process group, it would not see a ^C).
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cliArgs, isAlive, rememberProcess, stopWithTest } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { STALLED_SIZE, stallingOrigin } from './stalling-origin.js';

/** Runs the CLI until `started` holds, then sends `signal`; resolves with the signal it ended by. */
async function interrupt(t: Test, args: string[], started: () => boolean, signal: NodeJS.Signals): Promise<NodeJS.Signals | null> {
  const child = spawn(process.execPath, cliArgs(args), { stdio: 'ignore', env: { ...process.env, FLEETCACHE_TOKEN: 'x' } });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, sig) => resolve(sig)));
  stopWithTest(t, child, 'SIGKILL');
  await eventually('the command is under way', started, 30_000);
  child.kill(signal);
  return exited;
}

const partials = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith('.partial'));

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  t.test(`${signal} during a push's base download leaves no .partial in the base cache`, async (t) => {
    const base = { id: 'b1', digest: `sha256:${'b'.repeat(64)}`, size: STALLED_SIZE, created: 1 };
    const url = await stallingOrigin(t, { '/projects/p/bases': { bases: [base] } });
    // a tree whose gzip is over half the base (push.ts MAX_BASE_GROWTH): the base is worth
    // downloading whether or not the tree's gzip has ended when the push weighs it
    const dir = t.testdir({ proj: { 'a.bin': randomBytes(STALLED_SIZE / 2 + (64 << 10)) }, bases: {} });
    const bases = join(dir, 'bases');
    const args = ['push', '--project', 'p', '--origin', url, '--base-cache', bases, join(dir, 'proj')];
    t.equal(await interrupt(t, args, () => partials(bases).length > 0, signal), signal, `the push ends by ${signal}`);
    t.same(readdirSync(bases), [], 'nothing left in the base cache');
  });
}

// The second script's running command survives SIGINT and exits 0, after which bash, by its
// "wait and cooperative exit" rule, goes on with the script: a SIGINT alone would leave it running.
const REPACK_SCRIPTS = {
  'copying its input': 'cat <&3 >&4; touch ready; exec sleep 30',
  'running a command that survives SIGINT': 'cat <&3 >&4; bash -c \'trap "exit 0" INT; touch ready; while :; do sleep 0.05; done\'; exec sleep 30',
};
for (const [what, body] of Object.entries(REPACK_SCRIPTS)) for (const signal of ['SIGTERM', 'SIGINT'] as const) t.test(`${signal} during pack --repack ${what} leaves neither the output nor its partial files, nor the script running`, async (t) => {
  // should the script outlive the pack, it is stopped by its PID (registered before
  // t.testdir(), whose removal tap runs before the teardowns registered after it), and only
  // while it is still that process (rememberProcess)
  let pid: number | undefined;
  let script: ReturnType<typeof rememberProcess> | undefined;
  t.teardown(() => script?.kill('SIGKILL', true));
  const dir = t.testdir({ proj: { 'a.txt': 'a\n' } });
  const pidFile = join(dir, 'repack.pid');
  const repack = `echo $$ > ${pidFile}.new; mv ${pidFile}.new ${pidFile}; cd ${dir}; ${body}`;
  const started = (): boolean => {
    if (readdirSync(dir).includes('repack.pid') && pid === undefined) {
      pid = Number(readFileSync(pidFile, 'utf8'));
      script = rememberProcess(pid);
    }
    return readdirSync(dir).includes('ready');
  };
  t.equal(await interrupt(t, ['pack', join(dir, 'proj'), '-o', join(dir, 'out.tar'), '--repack', repack], started, signal), signal);
  t.same(readdirSync(dir).sort(), ['proj', 'ready', 'repack.pid']);
  await eventually('the repack script ends with the pack', () => !isAlive(pid!), 5000);
});
