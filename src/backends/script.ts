// What every executor shares: spread's remote script wrapper (spec section 11), the
// bounded output buffer, and the warn/kill timers.
import { StringDecoder } from 'node:string_decoder';
import { after, every } from '../long-timer.js';
import { shellQuote } from '../shell-quote.js';
import type { EnvEntry, ExecOptions } from './backend.js';

/** Output kept per script, in UTF-16 code units (a character past U+FFFF is two); older ones are dropped (scripts can print gigabytes). */
const OUTPUT_CAP = 1 << 20;
/** spread's fixed PATH for remote scripts, and for its local ones (allocate, discard). */
export const REMOTE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/snap/bin';
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** The exit code of REBOOT, ERROR and FATAL: the runner then reads their marker. */
export const MARKER_EXIT = 213;
const MARKER_LINE = /^<([A-Z_]+)(?: (.*))?>$/;

const HELPERS = [
  `REBOOT() { { set +xu; } 2>/dev/null; [ -z "\${1:-}" ] && echo '<REBOOT>' || echo "<REBOOT $1>"; exit ${MARKER_EXIT}; }`,
  `ERROR() { { set +xu; } 2>/dev/null; [ -z "\${1:-}" ] && echo '<ERROR>' || echo "<ERROR $*>"; exit ${MARKER_EXIT}; }`,
  `FATAL() { { set +xu; } 2>/dev/null; [ -z "\${1:-}" ] && echo '<FATAL>' || echo "<FATAL $*>"; exit ${MARKER_EXIT}; }`,
  // As spread's: in a subshell, so that their `set +xu` ends with them (fed by `<<<` or a
  // file they run in the script's own shell, and took its tracing and nounset away); grep
  // reads a here-string, not a pipe that breaks when `grep -q` stops at the first match, so
  // a script's `set -o pipefail` cannot turn a match into "not found".
  `MATCH() ( { set +xu; } 2>/dev/null; [ $# -gt 0 ] || { echo "error: missing regexp argument"; return 1; }; local stdin; stdin=$(cat); grep -q -E "$@" <<< "$stdin" || { res=$?; printf 'grep error: pattern not found, got:\\n%s\\n' "$stdin" >&2; if [ $res != 1 ]; then echo "unexpected grep exit status: $res"; fi; return 1; }; )`,
  `NOMATCH() ( { set +xu; } 2>/dev/null; [ $# -gt 0 ] || { echo "error: missing regexp argument"; return 1; }; local stdin; stdin=$(cat); if grep -q -E "$@" <<< "$stdin"; then printf "NOMATCH pattern='%s' found in:\\n%s\\n" "$*" "$stdin" >&2; return 1; fi; )`,
];

/**
 * The last `<NAME value>` marker line of a script's output. spread reads only the very
 * last line, but a background job's trace can land after the marker (stderr races
 * stdout), and the helpers exit right after printing theirs.
 */
export function lastMarker(output: string): { name: string; value: string } | undefined {
  for (const line of output.trim().split('\n').reverse()) {
    const m = MARKER_LINE.exec(line.trim());
    if (m) return { name: m[1]!, value: m[2] ?? '' };
  }
  return undefined;
}

/** `export KEY="value"`; empty or self-quoted values go unquoted (spec 4.3). */
export function exportLine([key, value]: EnvEntry): string {
  if (!ENV_KEY.test(key)) throw new Error(`invalid environment variable name "${key}"`);
  const quoted = value === '' || value.startsWith('"') || value.startsWith("'") ? value : `"${value}"`;
  return `export ${key}=${quoted}`;
}

interface RenderOptions {
  dir: string;
  env?: readonly EnvEntry[];
  trace?: boolean;
  /** Replace PATH by spread's fixed one (remote machines) or keep the caller's (local). */
  fixedPath?: boolean;
  /** Run through `sudo -i` (an SSH user that is not root): sudo's variables are unset, as spread unsets them. */
  sudo?: boolean;
}

/** What `sudo` sets that spread unsets: a script sees no trace of the user it came through. */
const SUDO_VARIABLES = ['SUDO_COMMAND', 'SUDO_USER', 'SUDO_UID', 'SUDO_GID'];

/** cd, spread's fixed exports, then the environment's, in order (shared by scripts and shells). */
function setupLines(o: RenderOptions): string[] {
  const lines = [`cd ${shellQuote(o.dir)}`, ...(o.sudo ? SUDO_VARIABLES.map((v) => `unset ${v}`) : []), 'export DEBIAN_FRONTEND=noninteractive', 'export DEBIAN_PRIORITY=critical'];
  if (o.fixedPath) lines.push(`export PATH=${REMOTE_PATH}`);
  for (const entry of o.env ?? []) lines.push(exportLine(entry));
  return lines;
}

/** The text fed to `/bin/bash -`: set -eu, cd, helpers, exports, set -x, the script. */
export function renderScript(script: string, o: RenderOptions): string {
  const [cd, ...exports] = setupLines(o);
  const lines = ['set -eu', cd!, ...HELPERS, ...exports];
  if (o.trace ?? true) lines.push('set -x');
  // stdout+stderr combined in one pipe, so a command's trace always precedes its output
  // (read from two pipes, they raced: test/backends/local.test.ts saw the trace after it).
  lines.push('(', script, ') </dev/null 2>&1', '');
  return lines.join('\n');
}

/** Ends the rc file's here-document in the shell wrapper (no line of the rc is this). */
const RC_END = 'FLEETCACHE_SHELL_RC';

/**
 * The script behind an interactive shell (spread's shellOutput mode): cd, spread's fixed
 * exports and the job's, then /bin/bash. spread writes PS1, SPREAD_PATH, SPREAD_BACKEND,
 * SPREAD_SYSTEM and MATCH/NOMATCH into /root/.bashrc, emptying it first, so that the
 * interactive bash sees them whatever its rc files do; the same lines go into a temporary
 * rc file here instead (`--rcfile`, or BASH_ENV for a shell reading a pipe), and the
 * machine's own .bashrc is left alone. REBOOT, ERROR and FATAL are not defined, as in spread.
 * Run with `/bin/bash -c` or from a file; stdin stays the caller's (the terminal).
 */
export function renderShell(o: RenderOptions): string {
  // the rc file removes itself once read: the shell replaces the wrapper (exec), so the
  // process the caller started, and ends, is the shell itself
  const rc = ['rm -f -- "${BASH_SOURCE[0]}"', 'unset BASH_ENV', ...HELPERS.filter((h) => /^(NO)?MATCH\(\)/.test(h))];
  for (const entry of o.env ?? []) if (RC_KEYS.has(entry[0])) rc.push(exportLine(entry));
  // cd and exports first: one that fails ends the wrapper before the rc file exists
  const lines = ['set -eu', ...setupLines(o), 'rc=$(mktemp)', `cat > "$rc" <<'${RC_END}'`, ...rc, RC_END];
  // interactive on a terminal, else it reads commands from the pipe
  lines.push('set +eu', 'if [ -t 0 ]; then exec /bin/bash --rcfile "$rc" -i; else BASH_ENV="$rc" exec /bin/bash; fi', '');
  return lines.join('\n');
}

/** What spread's shell re-exports in its .bashrc (client.go toBashRC). */
const RC_KEYS = new Set(['PS1', 'SPREAD_PATH', 'SPREAD_BACKEND', 'SPREAD_SYSTEM']);

/** spread's mark of output an earlier warning showed. */
const UNCHANGED = '(...)';

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

/** Keeps the last OUTPUT_CAP code units of a stream of chunks (at most), no character cut in two. */
export class OutputBuffer {
  #chunks: string[] = [];
  #length = 0;
  #seenAtWarn = 0;
  #total = 0;

  push(chunk: string): void {
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    this.#total += chunk.length;
    while (this.#length > OUTPUT_CAP && this.#chunks.length > 1) this.#length -= this.#chunks.shift()!.length;
  }

  /**
   * The output kept, under a line saying how much was dropped before it, if any: a failed
   * script's output is printed from here, and spread prints all of it (a log that starts
   * mid-line gave no sign that its beginning was missing).
   */
  text(): string {
    const kept = this.#kept();
    const dropped = this.#total - kept.length;
    return dropped > 0 ? `(... ${dropped} characters of output above dropped: only the last ${OUTPUT_CAP} are kept ...)\n${kept}` : kept;
  }

  #kept(): string {
    const all = this.#chunks.join('');
    if (all.length <= OUTPUT_CAP) return all;
    let start = all.length - OUTPUT_CAP;
    // not between the two halves of a character past U+FFFF (an emoji): printed, the half kept was a U+FFFD
    if (isLowSurrogate(all.charCodeAt(start))) start++;
    return all.slice(start);
  }

  /**
   * What spread's warning says of the output (client.go: Since, tail): what came since the
   * last warning, trimmed; after an earlier warning, from the line break before it, under a
   * `(...)` line. Of 14 lines or more, the last 10 under `(... N lines above ...)`, N as spread
   * counts it (one short). Else that there is none yet, or none new.
   */
  warnTail(): { tail: string } | { none: 'empty' | 'unchanged' } {
    if (this.#total === 0) return { none: 'empty' };
    if (this.#total === this.#seenAtWarn) return { none: 'unchanged' };
    const text = this.#kept();
    const start = text.length - Math.min(this.#total - this.#seenAtWarn, text.length);
    const shownBefore = this.#seenAtWarn > 0;
    this.#seenAtWarn = this.#total;
    const cut = shownBefore ? text.lastIndexOf('\n', start - 1) : -1;
    // spread: no line break in what was shown already (none past its first two bytes): all of it again
    const since = !shownBefore ? text.slice(start) : cut > 1 ? `${UNCHANGED}${text.slice(cut)}` : text;
    const fresh = since.trim();
    if (fresh === '') return { none: 'empty' };
    if (fresh === UNCHANGED) return { none: 'unchanged' };
    const lines = fresh.split('\n');
    if (lines.length < 14) return { tail: fresh };
    return { tail: `(... ${lines.length - 11} lines above ...)\n${lines.slice(-10).join('\n')}` };
  }

}

/** A script whose session broke before it told its exit status; `output`: what it printed until then. */
export class ScriptLostError extends Error {
  constructor(message: string, readonly output: string) {
    super(message);
    this.name = 'ScriptLostError';
  }
}

/** spread's words for a script running late: the output since the last warning, or that there is none. */
export function lateWarning(what: string, output: ReturnType<OutputBuffer['warnTail']>): string {
  if ('none' in output) return `WARNING: ${what} running late. ${output.none === 'empty' ? 'Output still empty.' : 'Output unchanged.'}`;
  return `WARNING: ${what} running late. Current output:\n-----\n${output.tail}\n-----`;
}

/**
 * Decodes one output stream's byte chunks as UTF-8 for `emit`, a character split between
 * two chunks kept whole (a chunk's own toString would make each half U+FFFD).
 */
export function utf8Chunks(emit: (text: string) => void): { write: (chunk: Buffer) => void; end: () => void } {
  const decoder = new StringDecoder('utf8');
  return {
    write: (chunk) => {
      const text = decoder.write(chunk);
      if (text) emit(text);
    },
    end: () => {
      const text = decoder.end();
      if (text) emit(text);
    },
  };
}

/**
 * Arms warn and kill timers (and the abort signal) for one running script.
 * Returns a disarm function; `kill` is called at most once.
 */
export function watchScript(o: ExecOptions, out: OutputBuffer, kill: () => void): () => void {
  const started = Date.now();
  // any length: a `kill-timeout: 600h` must not fire at once (long-timer.ts)
  const timers: Array<() => void> = [];
  let killed = false;
  const killOnce = (): void => {
    if (killed) return;
    killed = true;
    kill();
  };
  if (o.warnTimeout && o.warnTimeout > 0 && o.onWarn) {
    const onWarn = o.onWarn;
    timers.push(every(o.warnTimeout, () => onWarn({ elapsedMs: Date.now() - started, output: out.warnTail() })));
  }
  if (o.killTimeout && o.killTimeout > 0) timers.push(after(o.killTimeout, killOnce));
  o.signal?.addEventListener('abort', killOnce, { once: true });
  if (o.signal?.aborted) killOnce();
  return () => {
    for (const cancel of timers) cancel();
    o.signal?.removeEventListener('abort', killOnce);
  };
}
