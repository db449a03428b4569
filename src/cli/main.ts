// The CLI: one commander program, one file per command under src/cli/, and one place
// (here) where errors become exit codes.
import { CommanderError, Help, type Command, type Option } from 'commander';
import { EXIT, toFleetError } from '../errors.js';
import { errorText } from './exit-one.js';
import { FleetCommand } from './fleet-command.js';
import { normaliseSpreadFlags } from './spread-flags.js';
import { VERSION } from '../version.js';


type Register = (program: Command) => void;

/**
 * Every command's module, in the order `--help` lists them. Only the one named on the
 * command line is loaded: the others' dependencies (the runner, ssh2, the AWS SDK) would
 * add most of a second to every start of a cache worker or a one-shot command.
 */
const COMMANDS: ReadonlyArray<readonly [name: string, load: () => Promise<Register>]> = [
  ['demo', async () => (await import('./demo.js')).registerDemo],
  ['origin', async () => (await import('./origin.js')).registerOrigin],
  ['run', async () => (await import('./run.js')).registerRun],
  ['report', async () => (await import('./report.js')).registerReport],
  ['cache', async () => (await import('./cache.js')).registerCache],
  ['assets', async () => (await import('./assets.js')).registerAssets],
  ['list', async () => (await import('./list.js')).registerList],
  ['artifacts', async () => (await import('./artifacts.js')).registerArtifacts],
  ['pack', async () => (await import('./pack.js')).registerPack],
  ['delta', async () => (await import('./delta.js')).registerDelta],
  ['apply', async () => (await import('./apply.js')).registerApply],
  ['push', async () => (await import('./push.js')).registerPush],
  ['pull', async () => (await import('./pull.js')).registerPull],
  ['verify', async () => (await import('./verify.js')).registerVerify],
];

/**
 * The program with the command `argv` names, or with every command when it names none
 * (`--help`, `help`, a mistyped name that commander answers with suggestions) but for
 * `--version`.
 */
async function buildProgram(argv: string[] = []): Promise<Command> {
  const program = new FleetCommand('fleetcache')
    .version(VERSION)
    .description('Regional caches, a content-addressed artifact service, delta-repacked project uploads and a spread-compatible runner for test fleets.')
    .showHelpAfterError('(run with --help for usage)')
    // commander's own errors ("error: unknown option ...") read as every other error of the CLI
    .configureOutput({ outputError: (text, write) => write(`fleetcache: ${text}`) })
    // commander's help does not tell which options a command cannot run without: say so
    // (the commands made below inherit this)
    .configureHelp({
      optionDescription(this: Help, option: Option): string {
        const text = Help.prototype.optionDescription.call(this, option);
        return option.mandatory ? `${text} (required)` : text;
      },
    })
    .exitOverride();
  const named = COMMANDS.filter(([name]) => name === argv[0]);
  // `--version` alone needs no command (loading them all took 0.2 s of a 0.25 s answer)
  const version = argv.length === 1 && (argv[0] === '-V' || argv[0] === '--version');
  for (const [, load] of named.length > 0 || version ? named : COMMANDS) (await load())(program);
  // After a command, -V and --version print the version as --help prints its usage, where
  // the command has no --version of its own: `push --version` was told that --project is
  // missing, `cache --version` offered --region. Subcommands too (`artifacts get`): there
  // -V already worked through their parent, but their --help did not list it. Not those of
  // a command with a --version of its own (`assets`: tooltool's, which they take).
  const withVersion = (commands: readonly Command[]): void => {
    for (const command of commands) {
      if (command.options.some((option) => option.long === '--version')) continue;
      command.version(VERSION);
      withVersion(command.commands);
    }
  };
  withVersion(program.commands);
  // fleetcache's own options (-V, --version) go before the command, so that after it a
  // command may have its own --version (assets add, as tooltool.py's). Set after the
  // commands are made: they do not inherit it, and their options stay where they are.
  program.enablePositionalOptions();
  return program;
}

/**
 * `help [command...]` as `[command...] --help`: commander's own help command answers
 * `help --help` and `help help` with the program's help on stderr and exit 2, and an
 * unknown topic the same way, with no error. An unknown topic is run as a command, so that
 * it fails as a mistyped command does, with a suggestion.
 */
function helpAsFlag(args: string[]): string[] {
  if (args[0] !== 'help') return args;
  const topic = args.slice(1).filter((arg) => arg !== 'help' && arg !== '--help' && arg !== '-h');
  if (topic.length === 0) return ['--help'];
  return COMMANDS.some(([name]) => name === topic[0]) ? [...topic, '--help'] : topic.slice(0, 1);
}

/**
 * The commands that take spread's command line (`spread -list` is `run -list`). Only theirs
 * is read as spread spells it: another command's value (`report --run -list`,
 * `push --run -abend=false`) was turned into a flag or left out.
 */
const SPREAD_COMMANDS = new Set(['run', 'list']);

/** Runs the CLI and resolves to the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const args = helpAsFlag(SPREAD_COMMANDS.has(argv[0] ?? '') ? normaliseSpreadFlags(argv) : argv);
  try {
    await (await buildProgram(args)).parseAsync(args, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here with exit code 0; usage errors were already printed.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    process.stderr.write(`fleetcache: error: ${errorText(err)}\n`);
    return toFleetError(err).exitCode;
  }
}
