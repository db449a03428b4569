// A module body run under strace (from Debian), for what only the system calls show: the
// fsyncs that make a write outlive a power loss, and their order against renames and links.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { REPO_ROOT } from './processes.js';

/** Runs `code` (an ES module body, in the repository) under strace with `options`; its trace, one system call a line. */
export function straced(code: string, trace: string, options: string[]): string {
  execFileSync('strace', ['-f', '-qq', '-y', ...options, '-o', trace, process.execPath, '--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: REPO_ROOT, stdio: 'ignore', timeout: 60_000,
  });
  return readFileSync(trace, 'utf8');
}
