// A transfer interrupted at a terminal (Ctrl-C, SIGTERM) gives the terminal back as it was:
// the progress bars hide the cursor and turn line wrapping off while they draw, and a signal
// used to end the process with neither turned back on (no cursor in the shell afterwards).
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import t from 'tap';
import { cliArgs, descendantsOf, rememberProcess, stopWithTest } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';
import { serveOnLoopback } from '../helpers/loopback-server.js';

const HIDE_CURSOR = '\x1b[?25l';
const SHOW_CURSOR = '\x1b[?25h';
const WRAP_OFF = '\x1b[?7l';
const WRAP_ON = '\x1b[?7h';

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  t.test(`assets fetch on a terminal, ended by ${signal} mid-download: cursor and line wrapping are back on`, async (t) => {
    const dir = t.testdir();
    const content = randomBytes(64 * 1024);
    const hex = createHash('sha512').update(content).digest('hex');
    writeFileSync(join(dir, 'manifest.tt'), JSON.stringify([{ filename: 'big.bin', size: content.length * 4, algorithm: 'sha512', digest: hex }]));
    // A server that sends a quarter of the body and then holds the download open.
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-length': String(content.length * 4) });
      res.write(content);
    });
    const url = await serveOnLoopback(t, server);
    const command = [process.execPath, ...cliArgs(['assets', 'fetch', '-m', join(dir, 'manifest.tt'), '--dest', dir, '--url', url])]
      .map((a) => `'${a.replace(/'/g, `'\\''`)}'`)
      .join(' ');
    // util-linux script: the CLI on a pseudo-terminal, what it draws on our stdout
    const script = spawn('script', ['-qefc', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, FLEETCACHE_LOG_LEVEL: 'warn' } });
    stopWithTest(t, script, 'SIGKILL');
    let out = '';
    script.stdout.on('data', (c: Buffer) => (out += c.toString('latin1')));
    const ended = new Promise<void>((resolve) => script.once('exit', () => resolve()));
    await eventually('the bar drawn', () => out.includes(HIDE_CURSOR) && /\d+%/.test(out), 60_000);
    // the CLI: script's child (the shell execs it), or the shell's
    const cli = descendantsOf(script.pid!).find((pid) => {
      try {
        return /fleetcache|cli\/bin/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
      } catch {
        return false;
      }
    });
    t.ok(cli, 'the CLI process found');
    rememberProcess(cli!).kill(signal);
    await ended;
    const afterBars = out.slice(out.lastIndexOf(HIDE_CURSOR));
    t.ok(afterBars.includes(SHOW_CURSOR), 'the cursor is shown again');
    t.ok(out.lastIndexOf(WRAP_ON) > out.lastIndexOf(WRAP_OFF), 'line wrapping is on again');
  });
}
