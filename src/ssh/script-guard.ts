// A script run over SSH does not outlive its connection. sshd gives a command without a
// pty no hang-up when the connection drops: the script, and all it started, went on
// running, and the host, freed for another worker, ran two jobs at once. So the script
// runs in the background of a wrapper that waits on the channel's stdin, which the client
// never closes: its end (the connection dropped, or the client closed the channel to kill
// the script) stops every process of the script. Each process carries the script's token
// in its environment (FLEETCACHE_SCRIPT), so that on Linux those that left the process
// group (setsid, a daemon) are found too, by a sweep of /proc, also over a new connection
// when the old one could not be trusted to do it (SshClient.stopScripts). The scripts of
// one job carry its token too (FLEETCACHE_JOB): what they leave is killed at the job's end.
import { randomBytes } from 'node:crypto';
import { shellQuote } from '../shell-quote.js';

/** The variable every process of a script run over SSH carries, set to the script's token. */
const SCRIPT_MARK = 'FLEETCACHE_SCRIPT';
/** The variable every process of a job's script carries, set to the job's token (ExecOptions.job). */
const JOB_MARK = 'FLEETCACHE_JOB';

/** A new script's token: random, so that a sweep matches no process of any other script. */
export function scriptToken(): string {
  return randomBytes(12).toString('hex');
}

/**
 * The bash function `fleetcache_sweep NAME=VALUE`: SIGKILL to every process whose
 * environment (/proc/PID/environ, Linux) has the variable, but the shell running it. Twice:
 * a process forked behind the first pass's scan is caught by the second. GNU grep reads
 * every environ (-z: NUL-separated), run without the variable so that it does not find
 * itself, through xargs (no limit on the number of processes). Where grep lacks -z, bash
 * reads them variable by variable: 1.5-2.5 s at 2,000 processes, where grep takes 0.3 s.
 */
const SWEEP = [
  'fleetcache_sweep() {',
  // run as a script (set -eu): a process gone mid-scan fails a redirection, or a kill; and
  // bash 3.2 (macOS) has no $BASHPID, unbound
  '  set +eu',
  '  local pass p v',
  `  if command -v xargs >/dev/null && printf 'A=1\\0B=2\\0' | grep -q -z -x -F -e B=2 2>/dev/null; then`,
  '    for pass in 1 2; do',
  `      for p in $(printf '%s\\0' /proc/[0-9]*/environ | env -u "\${1%%=*}" xargs -0 grep -l -s -z -x -F -e "$1"); do`,
  '        p=${p#/proc/}; p=${p%/environ}',
  '        [ "$p" = "$BASHPID" ] || kill -KILL "$p"',
  '      done 2>/dev/null',
  '    done',
  '    return 0',
  '  fi',
  '  for pass in 1 2; do',
  '    for p in /proc/[0-9]*; do',
  '      [ "${p#/proc/}" = "$BASHPID" ] && continue',
  `      while IFS= read -r -d '' v; do if [ "$v" = "$1" ]; then kill -KILL "\${p#/proc/}"; break; fi; done < "$p/environ"`,
  '    done 2>/dev/null',
  '  done',
  '  return 0',
  '}',
].join('\n');

/** The channel's command: tells its PID (its process group's), then runs bash on stdin, marked with the script's token (and its job's). */
export function guardedShell(token: string, sudo: string, job?: string): string {
  const marks = [`${SCRIPT_MARK}=${token}`, ...(job === undefined ? [] : [shellQuote(`${JOB_MARK}=${job}`)])];
  return `echo "<PID $$>" >&2; exec ${sudo}env ${marks.join(' ')} /bin/bash -`;
}

/**
 * `script` (script.ts renderScript) wrapped for guardedShell: one compound command, which
 * bash reads whole before it runs any of it (so the watcher's `read` takes nothing of it),
 * and whose first line is the script's (so bash's line numbers in errors stay the script's).
 * The script runs in the background; the watcher waits for the end of stdin, then sweeps
 * the token and kills its own process group; the script's exit status is the wrapper's.
 * With `endJob` (the job's last script, ExecOptions.endsJob), a script that exits 0 is
 * followed by its job's sweep (sweepJob's), which saves the job a command of its own: not
 * one that failed, whose debug script and shell must find what it left as it left it.
 */
export function guardScript(script: string, token: string, endJob?: string): string {
  return [
    `{ ( ${script}) & job=$!`,
    SWEEP,
    `( read -r _ || :; fleetcache_sweep ${SCRIPT_MARK}=${token}; kill -KILL 0 ) <&0 >/dev/null 2>&1 & watch=$!`,
    'wait "$job"; code=$?',
    'kill "$watch" 2>/dev/null',
    ...(endJob === undefined ? [] : [`[ "$code" != 0 ] || fleetcache_sweep ${shellQuote(`${JOB_MARK}=${endJob}`)}`]),
    'exit "$code"; }',
    '',
  ].join('\n');
}

/** A bash command killing every process carrying one of `marks` (NAME=VALUE, see SWEEP). */
function sweepCommand(marks: readonly string[]): string {
  return [SWEEP, ...marks.map((mark) => `fleetcache_sweep ${shellQuote(mark)}`), ''].join('\n');
}

/** A bash command killing every process of the scripts of `tokens`. */
export function sweepScripts(tokens: readonly string[]): string {
  return sweepCommand(tokens.map((token) => `${SCRIPT_MARK}=${token}`));
}

/** A bash command killing every process of the scripts of job `job` (ExecOptions.job). */
export function sweepJob(job: string): string {
  return sweepCommand([`${JOB_MARK}=${job}`]);
}
