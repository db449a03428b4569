// An ssh2 client for machines: connect with timeout and retries, run spread-wrapped
// scripts with streaming output, exit code and kill timeouts, and move files over SFTP.
// Every remote command of the runner goes through this class.
import { connect as tcpConnect } from 'node:net';
import { constants } from 'node:os';
import { createReadStream } from 'node:fs';
import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, type ClientChannel, type ExecOptions as ChannelOptions, type SFTPWrapper } from 'ssh2';
import { ConfigError, errorMessage, UpstreamError } from '../errors.js';
import type { ExecOptions, ExecResult, Executor, ShellOptions } from '../backends/backend.js';
import { OutputBuffer, renderScript, renderShell, ScriptLostError, utf8Chunks, watchScript } from '../backends/script.js';
import { hostKeyCheck, HostKeyRefused } from './known-hosts.js';
import { guardedShell, guardScript, scriptToken, sweepJob, sweepScripts } from './script-guard.js';
import { shellQuote } from '../shell-quote.js';

export interface SshTarget {
  host: string;
  port?: number;
  /** Default root; other users run scripts through `sudo -i` like spread. */
  username?: string;
  password?: string;
  /** PEM/OpenSSH private key text. */
  privateKey?: string | Buffer;
  /**
   * OpenSSH known_hosts file the host's key must be listed in (see known-hosts.ts), read at
   * each connection. Undefined: any host key is accepted, as spread does.
   */
  knownHosts?: string;
}

export interface ConnectOptions {
  /** Per attempt, ms (default 10 s). */
  timeout?: number;
  /** Extra attempts after the first (default 0). */
  retries?: number;
  /** Pause between attempts, ms (default 1 s). */
  retryDelay?: number;
  /** After a kill, how long a channel may take to close before the connection is dropped, ms (default KILL_GRACE_MS). */
  killGrace?: number;
  signal?: AbortSignal;
}

const PID_MARK = /^<PID (\d+)>$/;
/**
 * How much of stderr's first line is kept while its end is awaited: more than PID_MARK's
 * longest. A machine that sends no line break (a broken or hostile one) had every byte it sent
 * kept in memory until the channel closed, and then dropped.
 */
const PID_MARK_MAX = 32;

/**
 * Reads the stderr of a channel whose command first echoes `<PID $$>` (see PID_MARK): tells
 * the PID, then hands every byte after that line on (all of them when the first line is not
 * the mark). `end`, at the channel's close, hands on a first line that never ended.
 */
function afterPidMark(onPid: (pid: number) => void, pass: (bytes: Buffer) => void): { write: (chunk: Buffer) => void; end: () => void } {
  let first: Buffer | undefined = Buffer.alloc(0);
  const passFirst = (rest: Buffer): void => {
    first = undefined;
    if (rest.length > 0) pass(rest);
  };
  return {
    write: (chunk) => {
      if (!first) return pass(chunk);
      first = Buffer.concat([first, chunk]);
      const nl = first.indexOf(0x0a);
      if (nl < 0) return first.length > PID_MARK_MAX ? passFirst(first) : undefined;
      const m = PID_MARK.exec(first.subarray(0, nl).toString('latin1'));
      if (m) onPid(Number(m[1]));
      passFirst(m ? first.subarray(nl + 1) : first);
    },
    end: () => {
      if (first) passFirst(first);
    },
  };
}
/**
 * After a kill, how long the channel may take to close before the whole connection is
 * dropped: on a machine that froze or vanished without closing its TCP connection (a
 * reboot seen mid-script), nothing ever answers the channel's close, and a kill timeout
 * that waits for it never ends. Dropping the connection closes every channel on it.
 */
const KILL_GRACE_MS = 5_000;

/** How long killing what a job or a lost script left may take (SshClient stopJob, stopScripts). */
const SWEEP_TIMEOUT_MS = 30_000;

/** Ends the here-document carrying an interactive shell's wrapper (no line of it is this). */
const SHELL_END = 'FLEETCACHE_SHELL_END';
/** After a shell's bash exits, how long its channel may stay open for the last output. */
const EXIT_DRAIN_MS = 200;

/** The local terminal's size, for the remote pty (80x24 when stdout and stderr are no terminal). */
function terminalSize(): { rows: number; cols: number } {
  const term = process.stdout.isTTY ? process.stdout : process.stderr.isTTY ? process.stderr : undefined;
  return { rows: term?.rows || 24, cols: term?.columns || 80 };
}

function connectOnce(target: SshTarget, timeout: number, signal?: AbortSignal): Promise<Client> {
  const port = target.port ?? 22;
  const hostKey = target.knownHosts === undefined ? undefined : hostKeyCheck(target.knownHosts, target.host, port);
  return new Promise((done, fail) => {
    const client = new Client();
    let settled = false;
    const settle = (then: () => void): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', abort);
      then();
    };
    // Aborted (the run is stopping): the attempt ends at once, where a host that takes the
    // TCP connection and never answers would hold it for the whole timeout.
    const abort = (): void =>
      settle(() => {
        client.destroy();
        fail(signal!.reason);
      });
    signal?.addEventListener('abort', abort, { once: true });
    // Kept for the client's whole life: a failed handshake may report twice (a timeout,
    // then "Connection lost before handshake"), and an error with no listener would be
    // thrown. After the first, errors surface as failed operations.
    client.on('error', (err: Error) =>
      settle(() => {
        client.end();
        // ssh2 says only "Host denied (verification failed)": the check says which key and why
        fail(hostKey ? hostKey.failure(err) : err);
      }),
    );
    client.once('ready', () => settle(() => done(client)));
    // A server that closes after its banner (an sshd killed mid-handshake, as in a reboot)
    // ends the client with no error at all, and ssh2 stops its ready timeout then.
    client.once('close', () => settle(() => fail(new Error('the server closed the connection during the handshake'))));
    client.connect({
      host: target.host,
      port,
      username: target.username ?? 'root',
      password: target.password,
      privateKey: target.privateKey,
      readyTimeout: timeout,
      keepaliveInterval: 15_000,
      ...(hostKey ? { hostVerifier: hostKey.verify, ...(hostKey.algorithms ? { algorithms: { serverHostKey: hostKey.algorithms } } : {}) } : {}),
    });
  });
}

/** Waits until host:port accepts TCP connections (spread waits before SSH). */
export async function waitForPort(host: string, port: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((done) => {
      const sock = tcpConnect({ host, port, timeout: 2000 });
      sock.once('connect', () => (sock.destroy(), done(true)));
      sock.once('error', () => done(false));
      sock.once('timeout', () => (sock.destroy(), done(false)));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new UpstreamError(`${host}:${port} does not accept connections`, { timeout: true });
    await sleep(250, undefined, { signal });
  }
}

/** A command's exit as `command` reports it: -1 when the channel closed without an exit status. */
function exitPhrase(code: number): string {
  return code === -1 ? 'the channel closed without an exit status' : `exit ${code}`;
}

export class SshClient implements Executor {
  readonly #client: Client;
  readonly #sudo: string;
  readonly #base: string;
  readonly #killGrace: number;
  /** The tokens of scripts whose connection was lost before they ended (see lostScripts). */
  readonly #lost = new Set<string>();
  #sftp: Promise<SFTPWrapper> | undefined;

  private constructor(client: Client, target: SshTarget, base: string, killGrace: number) {
    this.#client = client;
    this.#sudo = (target.username ?? 'root') === 'root' ? '' : 'sudo -i ';
    this.#base = base;
    this.#killGrace = killGrace;
  }

  /**
   * Connects, retrying on failure. `base` is the directory relative paths and the
   * default cwd resolve against (the machine's project path).
   */
  static async connect(target: SshTarget, o: ConnectOptions = {}, base = '/'): Promise<SshClient> {
    const attempts = (o.retries ?? 0) + 1;
    let last: unknown;
    for (let i = 0; i < attempts; i++) {
      if (i > 0) await sleep(o.retryDelay ?? 1000, undefined, { signal: o.signal });
      o.signal?.throwIfAborted();
      try {
        return new SshClient(await connectOnce(target, o.timeout ?? 10_000, o.signal), target, base, o.killGrace ?? KILL_GRACE_MS);
      } catch (err) {
        if (o.signal?.aborted) throw o.signal.reason;
        last = err;
        // a refused key or an unreadable known_hosts file is the same on every attempt
        if (err instanceof HostKeyRefused || err instanceof ConfigError) break;
      }
    }
    const why = errorMessage(last);
    throw new UpstreamError(`cannot connect to ${target.host}:${target.port ?? 22}: ${why}`, { cause: last });
  }

  #path(p: string): string {
    return posix.isAbsolute(p) ? p : posix.resolve(this.#base, p);
  }

  #channel(command: string, options: ChannelOptions = {}): Promise<ClientChannel> {
    return new Promise((done, fail) => this.#client.exec(command, options, (err, ch) => (err ? fail(err) : done(ch))));
  }

  /**
   * Runs one command; stdout and stderr go to `onData`. Resolves with its exit code; rejects
   * when a stream given as `stdin` fails.
   */
  async command(command: string, stdin?: string | Readable, onData?: (chunk: string) => void): Promise<number> {
    const ch = await this.#channel(command);
    return new Promise((done, fail) => {
      let code = -1;
      const emit = (text: string): void => onData?.(text);
      const stdout = utf8Chunks(emit);
      const stderr = utf8Chunks(emit);
      ch.on('data', stdout.write);
      ch.stderr.on('data', stderr.write);
      ch.on('exit', (c: number | null) => (code = c ?? 255));
      ch.on('error', fail);
      // ssh2 repeats the exit status on 'close': a quick command's 'exit' can come before
      // this listener was added (in the packet that confirmed the channel)
      ch.on('close', (c?: number | null) => {
        stdout.end();
        stderr.end();
        done(code === -1 && c !== undefined ? c ?? 255 : code);
      });
      if (stdin === undefined || typeof stdin === 'string') ch.end(stdin);
      else pipeline(stdin, ch).catch(fail);
    });
  }

  /**
   * Runs a spread-wrapped script under `/bin/bash -` (see script.ts). The kill timeout
   * (and the abort signal) bound the whole call, opening the channel included.
   */
  exec(script: string, o: ExecOptions = {}): Promise<ExecResult> {
    const token = scriptToken();
    // its processes end with the channel, dropped or closed (script-guard.ts)
    // the job's last script kills what the job left once it passed (script-guard.ts)
    const endJob = o.endsJob ? o.job : undefined;
    const text = guardScript(renderScript(script, { dir: this.#path(o.cwd ?? '.'), env: o.env, trace: o.trace, fixedPath: true, sudo: this.#sudo !== '' }), token, endJob);
    const out = new OutputBuffer();
    let ch: ClientChannel | undefined;
    let pid: number | undefined;
    let killed = false;
    let grace: NodeJS.Timeout | undefined;
    const emit = (s: string): void => {
      out.push(s);
      o.onOutput?.(s);
    };
    return new Promise((done, fail) => {
      const disarm = watchScript(o, out, () => {
        killed = true;
        if (pid !== undefined) this.command(`${this.#sudo}kill -KILL -- -${pid}`).catch(() => undefined);
        ch?.close();
        // A channel still opening has nothing to close yet: its connection goes at once.
        grace = setTimeout(() => {
          // the kill may not have reached the machine: what the script started may still run there
          if (ch) this.#lost.add(token);
          this.#client.destroy();
        }, ch ? this.#killGrace : 0);
      });
      const end = (): void => {
        disarm();
        clearTimeout(grace);
      };
      const killedResult = (): ExecResult => ({ exitCode: 137, output: out.text(), killed: true });
      // sshd makes the session's command a process-group leader; its pid names the group.
      this.#channel(guardedShell(token, this.#sudo, o.job)).then((opened) => {
        ch = opened;
        if (killed) {
          // Killed while opening: the script was never sent, and bash ends on the close.
          opened.close();
          end();
          return done(killedResult());
        }
        let code: number | undefined;
        const stdout = utf8Chunks(emit);
        const stderr = utf8Chunks(emit);
        opened.on('data', stdout.write);
        const marked = afterPidMark((p) => (pid = p), stderr.write);
        opened.stderr.on('data', marked.write);
        const codeOf = (c: number | null, sig?: string): number => c ?? (sig ? 128 + 9 : 255);
        opened.on('exit', (c: number | null, sig?: string) => (code = codeOf(c, sig)));
        opened.on('error', (err: Error) => (end(), fail(err)));
        // 'close' repeats the exit status, which came before these listeners when the shell
        // ended at once (sudo refusing) in the packet that confirmed the channel
        opened.on('close', (c?: number | null, sig?: string) => {
          if (code === undefined && c !== undefined) code = codeOf(c, sig);
          end();
          stdout.end();
          marked.end();
          stderr.end();
          if (killed) return done(killedResult());
          // closed without an exit status: the connection dropped (spread's session.Wait error)
          if (code === undefined) {
            this.#lost.add(token);
            return fail(new ScriptLostError('remote command exited without exit status or exit signal (the connection to the machine was lost)', out.text()));
          }
          done({ exitCode: code, output: out.text(), killed: false, ...(endJob !== undefined && code === 0 ? { jobStopped: true } : {}) });
        });
        // stdin stays open: its end stops the script (script-guard.ts)
        opened.write(text);
      }, (err: unknown) => {
        end();
        if (killed) done(killedResult());
        else fail(err);
      });
    });
  }

  /**
   * An interactive shell wired to this process's stdin, stdout and stderr (spread's Shell).
   * When stdin is a terminal: a pty of the local terminal's TERM and size, following its
   * resizes, with the local terminal in raw mode meanwhile, so that every key (Ctrl-C
   * too) goes to the remote shell. Otherwise plain pipes, and the end of stdin ends the shell.
   */
  async shell(o: ShellOptions = {}): Promise<number> {
    const script = renderShell({ dir: this.#path(o.cwd ?? '.'), env: o.env, fixedPath: true, sudo: this.#sudo !== '' });
    const { stdin, stdout, stderr } = process;
    const tty = stdin.isTTY === true;
    // Without a pty nothing hangs up what the shell started when it is interrupted: its
    // process group is killed, as a script's is (exec), by the PID it tells first on stderr.
    const mark = tty ? '' : 'echo "<PID $$>" >&2; ';
    const command = `${mark}${this.#fromScriptFile(script)}`;
    const ch = await this.#channel(command, tty ? { pty: { term: process.env.TERM || 'vt100', ...terminalSize() } } : {});
    return new Promise((done) => {
      let code = 255;
      let pid: number | undefined;
      const onResize = (): void => {
        const { rows, cols } = terminalSize();
        ch.setWindow(rows, cols, 0, 0);
      };
      const close = (): void => void ch.close();
      const kill = (): void => {
        if (pid !== undefined) this.command(`${this.#sudo}kill -KILL -- -${pid}`).catch(() => undefined);
        close();
      };
      o.signal?.addEventListener('abort', kill, { once: true });
      if (tty) {
        stdin.setRawMode(true);
        stdout.on('resize', onResize);
        ch.stderr.pipe(stderr, { end: false });
      } else {
        const marked = afterPidMark((p) => (pid = p), (b) => void stderr.write(b));
        ch.stderr.on('data', marked.write);
        ch.once('close', marked.end);
      }
      ch.pipe(stdout, { end: false });
      stdin.pipe(ch);
      let exited = false;
      // ssh2 names the signal as node does ("SIGKILL")
      const codeOf = (c: number | null, sig?: string): number => c ?? 128 + (constants.signals[sig as NodeJS.Signals] ?? 0);
      ch.on('exit', (c: number | null, sig?: string) => {
        exited = true;
        code = codeOf(c, sig);
        // bash is gone: a job it left in the background must not hold the channel (and the
        // run) open; what is in flight has a moment to arrive
        setTimeout(close, EXIT_DRAIN_MS).unref();
      });
      // an error closes the channel too: its exit status is what is known
      ch.on('error', () => undefined);
      ch.on('close', (c?: number | null, sig?: string) => {
        // as in exec: an exit status that came before the 'exit' listener
        if (!exited && c !== undefined) code = codeOf(c, sig);
        // what stdin holds and the shell did not take stays for the next reader
        stdin.unpipe(ch);
        stdin.pause();
        if (tty) {
          stdin.setRawMode(false);
          stdout.off('resize', onResize);
        }
        o.signal?.removeEventListener('abort', kill);
        done(code);
      });
      if (o.signal?.aborted) kill();
    });
  }

  #sftpSession(): Promise<SFTPWrapper> {
    this.#sftp ??= new Promise((done, fail) => this.#client.sftp((err, s) => (err ? fail(err) : done(s))));
    return this.#sftp;
  }

  /**
   * The SFTP session, or undefined when the host will not start one: hardened hosts often
   * have no `Subsystem sftp`, and spread needs none (a shell is enough), so files then go
   * through `cat` in a shell (see upload).
   */
  async #sftpIfAny(): Promise<SFTPWrapper | undefined> {
    try {
      return await this.#sftpSession();
    } catch (err) {
      // ssh2's words for a server without the subsystem; anything else (a session limit
      // reached, say) is tried again next time
      if (/Unable to start subsystem: sftp/.test(errorMessage(err))) return undefined;
      this.#sftp = undefined;
      throw err;
    }
  }

  /**
   * A command that runs `script` with the user's commands run as (root, through `sudo -i`
   * for another user) from a file: `sudo -i` would mangle a multi-line command, and expands
   * a `$` in its arguments (it escapes every other character). The script goes to a temp
   * file first, as spread does, which removes itself once bash has it open. Its standard
   * input is the command's.
   */
  #fromScriptFile(script: string): string {
    return `f=$(mktemp) && cat > "$f" <<'${SHELL_END}' && exec ${this.#sudo}/bin/bash "$f"\nrm -f -- "$0"\n${script}\n${SHELL_END}\n`;
  }

  /** `command` run as root: as it is for root, from a script file through `sudo -i` for another user. */
  #asRoot(command: string): string {
    return this.#sudo ? this.#fromScriptFile(command) : command;
  }

  /** Runs `command`; one that fails is `failure`, with its exit and the end of what it printed (mkdir, cat and sudo print nothing else). */
  async #mustSucceed(command: string, stdin: Readable | undefined, failure: string): Promise<void> {
    let said = '';
    const code = await this.command(command, stdin, (text) => (said = (said + text).slice(-2000)));
    if (code !== 0) throw new UpstreamError(`${failure} (${exitPhrase(code)}${said.trim() ? `: ${said.trim()}` : ''})`);
  }

  async upload(source: Readable | string, remotePath: string, mode?: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const input = typeof source === 'string' ? createReadStream(source) : source;
    // an abort cuts the source: the transfer fails as with a source that breaks (a part file is removed)
    const cut = (): void => void input.destroy(signal?.reason instanceof Error ? signal.reason : new Error('upload aborted'));
    // cut while the directory is made, the source is not piped yet: its error had no listener
    // and was thrown as uncaught; the upload fails with the abort before anything is sent
    const unpiped = (): void => undefined;
    input.once('error', unpiped);
    signal?.addEventListener('abort', cut, { once: true });
    try {
      await this.#send(input, this.#path(remotePath), mode, signal);
    } finally {
      input.off('error', unpiped);
      signal?.removeEventListener('abort', cut);
    }
  }

  async #send(input: Readable, target: string, mode: number | undefined, signal?: AbortSignal): Promise<void> {
    const dir = shellQuote(posix.dirname(target));
    // Root writes the file, and runs it (the agent): a directory another user owns, or may
    // write to, would let them swap it (or plant a symlink it is written through) first. It
    // is made root's when missing; one that is there (`path: /tmp/p` puts the agent's in /tmp)
    // must be root's already.
    // (ls -ld's mode: others' write bit, then the group's, which root's group may have)
    const rootsAlone = `[ -d ${dir} ] && [ ! -L ${dir} ] && [ -O ${dir} ] && case "$(ls -ld -- ${dir})" in ????????w*) false ;; ?????w*) [ -G ${dir} ] ;; esac`;
    await this.#mustSucceed(
      this.#asRoot(`mkdir -p -- ${dir} && { ${rootsAlone} || { echo 'it is not root'"'"'s alone (another user owns it, or may write to it)' >&2; exit 1; }; }`),
      undefined,
      `cannot write into ${posix.dirname(target)} on the machine`,
    );
    signal?.throwIfAborted();
    // Files are written by the user commands run as: another login user goes through
    // `sudo -i` (as spread's `sudo -i tar x`), into directories root made. SFTP writes as
    // the login user: root's only.
    const sftp = this.#sudo ? undefined : await this.#sftpIfAny();
    if (sftp) return pipeline(input, sftp.createWriteStream(target, mode === undefined ? {} : { mode }));
    // Written aside, then renamed by a second command once this side sent all of it: a cut
    // channel is an end of input to `cat`, which would take a part for the whole.
    const part = shellQuote(`${target}.fleetcache-part`);
    try {
      await this.#mustSucceed(this.#asRoot(`cat > ${part}`), input, `cannot write ${target} on the machine`);
    } catch (err) {
      await this.command(this.#asRoot(`rm -f ${part}`)).catch(() => undefined);
      throw err;
    }
    const chmod = mode === undefined ? '' : `chmod ${mode.toString(8)} ${part} && `;
    if ((await this.command(this.#asRoot(`${chmod}mv -f ${part} ${shellQuote(target)}`))) !== 0) throw new UpstreamError(`cannot write ${target} on the machine`);
  }

  /**
   * The tokens of the scripts whose connection was lost before they told their exit status
   * (or that a kill may not have reached): their processes may still run on the machine,
   * when the machine did not see the connection drop (a network cut it never noticed).
   */
  lostScripts(): string[] {
    return [...this.#lost];
  }

  /** Kills every process of the scripts of `tokens` (lostScripts of another client of the machine), as root; aborting `signal` cuts it. */
  stopScripts(tokens: readonly string[], signal?: AbortSignal): Promise<void> {
    return this.#sweep(sweepScripts(tokens), 'cannot stop the processes of the scripts whose connection was lost', signal);
  }

  /** Kills every process the scripts of job `job` (ExecOptions.job) left running, as root; aborting `signal` cuts it. */
  stopJob(job: string, signal?: AbortSignal): Promise<void> {
    return this.#sweep(sweepJob(job), `cannot stop the processes job ${job} left`, signal);
  }

  /**
   * Runs a sweep (script-guard.ts) as a script, as root: bounded by SWEEP_TIMEOUT_MS and
   * `signal`, so that a machine that stopped answering does not hold the run.
   */
  async #sweep(bash: string, failure: string, signal?: AbortSignal): Promise<void> {
    const r = await this.exec(bash, { cwd: '/', trace: false, killTimeout: SWEEP_TIMEOUT_MS, ...(signal ? { signal } : {}) });
    const said = r.output.trim();
    if (r.exitCode !== 0) throw new UpstreamError(`${failure} (${r.killed ? 'killed' : exitPhrase(r.exitCode)}${said ? `: ${said}` : ''})`);
  }

  async close(): Promise<void> {
    if (this.#sftp) (await this.#sftp.catch(() => undefined))?.end();
    this.#client.end();
  }
}
