// A throwaway nginx serving one directory from disk on loopback, as a bench anchor.
// Installs the Debian package when missing; its own config, pid and logs in a temp dir.
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { freePort, startProcess, type BenchProcess } from './processes.js';

export interface RunningNginx {
  readonly url: string;
  readonly root: string;
  /** The master's PID (its workers are its children). */
  readonly pid: number;
  stop(): Promise<void>;
}

/** Installs nginx with apt-get unless it is already on PATH (serialized with other installers). */
export function ensureNginx(): void {
  try {
    execFileSync('nginx', ['-v'], { stdio: 'ignore' });
    return;
  } catch {
    // not installed yet
  }
  process.stderr.write('nginx missing: apt-get install -y nginx\n');
  execFileSync('flock', ['/tmp/apt.lock', 'sh', '-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx'], { stdio: 'inherit' });
}

/**
 * Starts nginx (foreground, stopped by its master's PID) serving `<dir>/root`. `dir` must
 * be a fresh directory whose parents nginx's unprivileged workers can traverse; it is made
 * world-readable itself.
 */
export async function startNginx(dir: string): Promise<RunningNginx> {
  const root = join(dir, 'root');
  const temp = join(dir, 'temp');
  await mkdir(root, { recursive: true });
  await mkdir(temp, { recursive: true });
  await chmod(dir, 0o755);
  await chmod(root, 0o755);
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  // Temp paths are set so nginx never touches /var/lib/nginx.
  await writeFile(conf, `daemon off;
worker_processes 2;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')};
events {}
http {
  access_log off;
  sendfile on;
  keepalive_requests 100000;
  client_body_temp_path ${temp}/body;
  proxy_temp_path ${temp}/proxy;
  fastcgi_temp_path ${temp}/fastcgi;
  uwsgi_temp_path ${temp}/uwsgi;
  scgi_temp_path ${temp}/scgi;
  server {
    listen 127.0.0.1:${port};
    root ${root};
  }
}
`);
  const proc: BenchProcess = startProcess('nginx', ['-c', conf, '-p', dir, '-e', join(dir, 'error.log')]);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.child.exitCode !== null) throw new Error(`nginx exited with ${proc.child.exitCode}: ${proc.stderr()}`);
    try {
      const res = await request(`${url}/`, { method: 'HEAD' });
      await res.body.dump();
      break;
    } catch (err) {
      if (Date.now() > deadline) {
        await proc.stop();
        throw new Error(`nginx not answering on ${url} within 10 s: ${(err as Error).message}; ${proc.stderr()}`);
      }
      await sleep(50);
    }
  }
  return { url, root, pid: proc.child.pid!, stop: () => proc.stop() };
}
