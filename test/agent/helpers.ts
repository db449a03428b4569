// Running the bundled agent as a machine would: a copy of dist/agent.mjs alone in a temp
// directory outside the repository (no node_modules anywhere above it), started with node;
// or a command's logic in the test's own process (runAgentHere), half a second of CPU less.
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { runAgent as runAgentCommand } from '../../src/agent/commands.js';
import { ensureAgentBundle } from '../../src/agent/paths.js';
import { serveOnLoopback } from '../helpers/loopback-server.js';

interface AgentRun {
  readonly code: number;
  readonly json: Record<string, unknown>;
  readonly stdout: string;
  readonly stderr: string;
}

/** Copies the (freshly built if stale) bundle to a lone temp directory; returns its path. */
export async function installAgent(t: Test): Promise<string> {
  const bundle = await ensureAgentBundle();
  const dir = mkdtempSync(join(tmpdir(), 'fleetcache-agent-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const agent = join(dir, 'agent.mjs');
  copyFileSync(bundle, agent);
  return agent;
}

export function runAgent(agent: string, command: string, args: object, cwd?: string): Promise<AgentRun> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [agent, command, '--json-args', JSON.stringify(args)], { cwd, timeout: 30_000 }, (err, stdout, stderr) => {
      const lines = stdout.trim().split('\n');
      let json: Record<string, unknown>;
      try {
        json = JSON.parse(lines[lines.length - 1] ?? '') as Record<string, unknown>;
      } catch {
        return reject(new Error(`agent ${command}: no JSON line on stdout (${stdout}); stderr: ${stderr}`));
      }
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, json, stdout, stderr });
    });
  });
}

type Write = typeof process.stderr.write;

/**
 * `node agent.mjs <command> --json-args <args>` run in this process: the command's answer
 * and exit code as the agent would print and exit with, and what it wrote to stderr. The
 * environment ($TMPDIR, which pull's workDir sets) is restored after it. For the tests of a
 * command's logic; the bundle (its embedded xdelta3) and the process need runAgent.
 */
export async function runAgentHere(command: string, args: object): Promise<Omit<AgentRun, 'stdout'>> {
  const env = { ...process.env };
  const write = process.stderr.write;
  const stderr: string[] = [];
  process.stderr.write = ((chunk: string | Uint8Array) => (stderr.push(String(chunk)), true)) as Write;
  try {
    const { output, exitCode } = await runAgentCommand([command, '--json-args', JSON.stringify(args)]);
    const json = JSON.parse(JSON.stringify(output)) as Record<string, unknown>; // as read from the line
    return { code: exitCode, json, stderr: stderr.join('') };
  } finally {
    process.stderr.write = write;
    for (const name of Object.keys(process.env)) if (!(name in env)) delete process.env[name];
    Object.assign(process.env, env);
  }
}

/** A server that answers every request with `status`. */
export async function statusServer(t: Test, status: number, code = 'FC_ERR_UNAVAILABLE'): Promise<string> {
  const server: Server = createServer((_req, res) => {
    res.statusCode = status;
    res.end(JSON.stringify({ code, message: 'test server' }));
  });
  return serveOnLoopback(t, server);
}
