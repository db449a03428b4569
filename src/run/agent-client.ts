// The runner's side of the machine agent: the bundled agent is uploaded once per
// machine, then each command runs as `node <agent> <command> --json-args-file -`, its
// arguments in a here-document of the script (never on a command line, where `ps` shows a
// token to every user of the machine), and answers with one JSON line on stdout.
import { posix } from 'node:path';
import type { Machine } from '../backends/backend.js';
import { ERROR_CODES, FleetError, type ErrorCode } from '../errors.js';
import { shellQuote } from '../shell-quote.js';

const AGENT_REMOTE_NAME = '.fleetcache-agent.mjs';

/** The runner's directory on a machine, beside the project: the agent, its caches, its markers. */
export function agentWorkDir(machine: Pick<Machine, 'projectPath'>): string {
  return posix.join(posix.dirname(machine.projectPath), '.fleetcache');
}

/** Where installAgent puts the agent on a machine. */
export function agentPath(machine: Pick<Machine, 'projectPath'>): string {
  return posix.join(agentWorkDir(machine), AGENT_REMOTE_NAME);
}

export interface AgentAnswer {
  ok: boolean;
  error?: string;
  [field: string]: unknown;
}

/** An agent command that failed, with the answer it gave, if any: a fetch that failed a file still says what it tried. */
export class AgentCommandError extends FleetError {
  constructor(code: ErrorCode, message: string, readonly answer: AgentAnswer | undefined) {
    super(code, message);
  }
}

/** Uploads the agent; aborting `signal` (the run interrupted) cuts the transfer. */
export async function installAgent(machine: Machine, bundle: string, signal?: AbortSignal): Promise<string> {
  const remote = agentPath(machine);
  await machine.upload(bundle, remote, 0o644, signal);
  return remote;
}

/** Ends the here-document; JSON.stringify never writes a newline, so no line of it can match. */
const ARGS_END = 'FLEETCACHE_AGENT_ARGS';

/** Runs one agent command; throws FC_ERR_UNAVAILABLE with the agent's own message when it fails. */
export async function runAgent(machine: Pick<Machine, 'name' | 'exec'>, agent: string, command: string, args: object, signal?: AbortSignal): Promise<AgentAnswer> {
  // The quoted delimiter keeps bash from expanding anything in the JSON.
  const script = `node ${shellQuote(agent)} ${command} --json-args-file - <<'${ARGS_END}'\n${JSON.stringify(args)}\n${ARGS_END}`;
  const res = await machine.exec(script, {
    trace: false,
    cwd: '/',
    killTimeout: 30 * 60_000,
    ...(signal ? { signal } : {}),
  });
  const last = res.output.trim().split('\n').reverse().find((l) => l.startsWith('{'));
  let answer: AgentAnswer | undefined;
  try {
    answer = last ? (JSON.parse(last) as AgentAnswer) : undefined;
  } catch {
    answer = undefined;
  }
  if (res.exitCode !== 0 || !answer?.ok) {
    const why = answer?.error ?? res.output.trim().split('\n').slice(-5).join('\n');
    // The agent answers with a catalogue code; anything else (no node, no answer) is "unavailable".
    const code = typeof answer?.code === 'string' && answer.code in ERROR_CODES ? (answer.code as ErrorCode) : 'FC_ERR_UNAVAILABLE';
    throw new AgentCommandError(code, `agent ${command} on ${machine.name} failed: ${why}`, answer);
  }
  return answer;
}
