// Every command answers --help (exit 0, its usage on stdout), the program's help lists
// them all, and a mistyped command is a usage error that suggests the right one. main()
// loads only the module of the command it is given, so each is asked on its own.
import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FleetCommand } from '../../src/cli/fleet-command.js';
import { EXIT } from '../../src/errors.js';
import { runCli } from '../helpers/cli.js';
import { cliArgs } from '../helpers/processes.js';

const SUBCOMMANDS = [['assets', 'fetch'], ['assets', 'list'], ['assets', 'validate'], ['assets', 'purge'], ['assets', 'add'], ['assets', 'upload'], ['artifacts', 'get']] as const;
const COMMANDS = ['demo', 'origin', 'run', 'report', 'cache', 'assets', 'list', 'artifacts', 'pack', 'delta', 'apply', 'push', 'pull', 'verify'];

t.test('fleetcache --help lists every command', async (t) => {
  for (const args of [['--help'], ['help']]) {
    const { code, stdout } = await runCli(args);
    t.equal(code, EXIT.ok, args.join(' '));
    t.match(stdout, /^Usage: fleetcache \[options\] \[command\]/);
    for (const name of COMMANDS) t.match(stdout, new RegExp(`^  ${name}\\b`, 'm'), `${args.join(' ')} lists ${name}`);
  }
});

t.test('--version and -V print the version alone', async (t) => {
  const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) {
    const { code, stdout } = await runCli([flag]);
    t.same([code, stdout], [EXIT.ok, `${version}\n`], flag);
  }
});

t.test('after a command, --version and -V print the version as --help prints its usage: not a missing required option or an unknown one', async (t) => {
  const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  for (const name of COMMANDS.filter((c) => c !== 'assets')) {
    for (const flag of ['--version', '-V']) {
      const { code, stdout, stderr } = await runCli([name, flag]);
      t.same([code, stdout, stderr], [EXIT.ok, `${version}\n`, ''], `${name} ${flag}`);
    }
  }
  const sub = await runCli(['artifacts', 'get', '--version']);
  t.same([sub.code, sub.stdout], [EXIT.ok, `${version}\n`], 'artifacts get --version');
  // tooltool's own --version (the asset's version label) stays
  const tooltool = await runCli(['assets', 'fetch', '--version']);
  t.equal(tooltool.code, EXIT.usage);
  t.match(tooltool.stderr, /option '--version <text>' argument missing/);
});

t.test("a subcommand's --help lists -V, --version exactly when -V prints the version", async (t) => {
  const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  for (const args of SUBCOMMANDS) {
    const help = await runCli([...args, '--help']);
    const asked = await runCli([...args, '-V']);
    const listed = /^ {2}-V, --version\b/m.test(help.stdout);
    const printed = asked.code === EXIT.ok && asked.stdout === `${version}\n`;
    t.equal(listed, printed, `${args.join(' ')}: listed ${listed}, printed ${printed}`);
  }
  t.match((await runCli(['artifacts', 'get', '--help'])).stdout, /^ {2}-V, --version\b/m, 'artifacts get lists it');
});

t.test('each command answers --help with its own usage', async (t) => {
  for (const name of COMMANDS) {
    const { code, stdout } = await runCli([name, '--help']);
    t.equal(code, EXIT.ok, `${name} --help exits 0`);
    t.match(stdout, new RegExp(`^Usage: fleetcache ${name} `), `${name} --help prints its usage`);
  }
  for (const [parent, sub] of SUBCOMMANDS) {
    const { code, stdout } = await runCli([parent, sub, '--help']);
    t.equal(code, EXIT.ok);
    t.match(stdout, new RegExp(`^Usage: fleetcache ${parent} ${sub} `), `${parent} ${sub} --help`);
  }
});

t.test('help answers help about itself, a command, or a subcommand; an unknown topic is a mistyped command', async (t) => {
  for (const args of [['help', '--help'], ['help', '-h'], ['help', 'help']]) {
    const { code, stdout } = await runCli(args);
    t.equal(code, EXIT.ok, args.join(' '));
    t.match(stdout, /^Usage: fleetcache \[options\] \[command\]/, `${args.join(' ')} prints the program's usage`);
  }
  for (const [args, usage] of [[['help', 'push'], /^Usage: fleetcache push /], [['help', 'assets', 'fetch'], /^Usage: fleetcache assets fetch /]] as const) {
    const { code, stdout } = await runCli([...args]);
    t.equal(code, EXIT.ok, args.join(' '));
    t.match(stdout, usage);
  }
  const { code, stderr } = await runCli(['help', 'cach']);
  t.equal(code, EXIT.usage);
  t.match(stderr, /fleetcache: error: unknown command 'cach'/);
  t.match(stderr, /Did you mean cache\?/);
});

t.test('a mistyped command is a usage error naming the right one', async (t) => {
  const { code, stderr } = await runCli(['cach', '--listen', '127.0.0.1:0']);
  t.equal(code, EXIT.usage);
  t.match(stderr, /unknown command 'cach'/);
  t.match(stderr, /Did you mean cache\?/);
});

t.test('a malformed command line is reported as every other error: fleetcache: error:', async (t) => {
  for (const args of [['push', '--bogus'], ['pull', 'dir'], ['cach']]) {
    const { code, stderr } = await runCli(args);
    t.equal(code, EXIT.usage, args.join(' '));
    t.match(stderr, /^fleetcache: error: /, `${args.join(' ')}: ${stderr.split('\n')[0]}`);
  }
});

t.test('output cut short by its reader (| head) ends quietly: no EPIPE stack trace, exit 0', async (t) => {
  // the reading end is closed before the CLI has started: its first write fails with EPIPE
  const child = spawn(process.execPath, cliArgs(['assets', 'upload', '--help']), { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.destroy();
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  t.notMatch(stderr, /EPIPE|Unhandled|\n\s+at /, 'no stack trace');
  t.equal(code, 0);
});

t.test("an option a command cannot run without is marked (required) in its --help; the others are not", async (t) => {
  const cases: ReadonlyArray<readonly [command: string[], required: string[], optional: string]> = [
    [['push'], ['--project <name>', '--origin <url>'], '--run <id>'],
    [['pull'], ['--project <name>', '--run <id>', '--from <url>'], '--token-file <file>'],
    [['pack'], ['-o, --output <file>'], '--repack <script>'],
    [['delta'], ['--base <file>', '-o, --output <file>'], '--level <n>'],
    [['apply'], ['--base <file>', '-o, --output <file>'], '--expect <digest>'],
    [['artifacts', 'get'], ['--from <url>'], '--token-file <file>'],
  ];
  const line = (stdout: string, flag: string): string => {
    const at = stdout.indexOf(`  ${flag} `);
    return stdout.slice(at, stdout.indexOf('\n  -', at + 1)).replace(/\s+/g, ' ');
  };
  for (const [command, required, optional] of cases) {
    const { code, stdout } = await runCli([...command, '--help']);
    t.equal(code, EXIT.ok);
    for (const flag of required) t.match(line(stdout, flag), /\(required\)$/, `${command.join(' ')} ${flag}: required`);
    t.notMatch(line(stdout, optional), /\(required\)/, `${command.join(' ')} ${optional}: not required`);
    const missing = await runCli(command[0] === 'artifacts' ? [...command, 'r/j'] : [...command, 'x']);
    t.match(missing.stderr, new RegExp(`required option '${required[0]!.replace(/[<>]/g, '\\$&')}' not specified`), `${command.join(' ')} without ${required[0]} says it is required`);
  }
});

t.test("run --help attributes to spread none of fleetcache's own flags: spread has no -order (spread-spec.md §10)", async (t) => {
  const { code, stdout } = await runCli(['run', '--help']);
  t.equal(code, EXIT.ok);
  t.notMatch(stdout, /spread -order/, '--order is not said to be spread\'s');
  const spreads = /spread's single-dash spellings \(([^)]*)\)/.exec(stdout)?.[1];
  t.ok(spreads, 'the help lists spread\'s single-dash spellings');
  t.notMatch(spreads ?? '', /-order\b/, 'nor -order among them');
  t.match(stdout, /-order, -fleet and -data/, 'it is accepted with one dash, as fleetcache\'s');
});

t.test('an unknown option that begins real ones suggests them, not the nearest by edit distance (run --rep was offered --help)', async (t) => {
  const cases: Array<[string[], string]> = [
    [['run', '--rep'], '--repeat'],
    [['run', '--rep=3'], '--repeat'],
    [['run', '-rep'], '--repeat'], // spread's single dash
    [['run', '--art'], '--artifacts'],
    [['run', '--re'], 'one of --repeat, --resend, --restore, --reuse'],
    [['assets', 'fetch', '--cache-f'], '--cache-folder'], // an option of the parent command
    [['run', '--workrs'], '--workers'], // none begun: commander's suggestion by edit distance stays
  ];
  for (const [args, suggestion] of cases) {
    const { code, stderr } = await runCli(args);
    t.equal(code, EXIT.usage, args.join(' '));
    t.match(stderr, `fleetcache: error: unknown option '${args.at(-1)}'\n(Did you mean ${suggestion}?)`, args.join(' '));
  }
  const hidden = await runCli(['run', '--reuse-']);
  t.notMatch(hidden.stderr, /reuse-pid/, 'a hidden option is not suggested');
});

t.test("a command that allows unknown options takes one that begins a real one, as commander's allowUnknownOption says", async (t) => {
  const program = new FleetCommand('fleetcache').exitOverride();
  let given: string[] = [];
  program.command('wrap').option('--repeat <n>').allowUnknownOption().argument('[rest...]').action((rest: string[]) => {
    given = rest;
  });
  await program.parseAsync(['wrap', '--rep', 'x'], { from: 'user' });
  t.same(given, ['--rep', 'x'], 'passed on as an argument, not refused with a suggestion');
});

t.test('origin and cache --help say how to set the log level (there is no --log-level), naming the levels the servers accept', async (t) => {
  const dir = t.testdir();
  const saved = process.env.FLEETCACHE_LOG_LEVEL;
  t.teardown(() => {
    if (saved === undefined) delete process.env.FLEETCACHE_LOG_LEVEL;
    else process.env.FLEETCACHE_LOG_LEVEL = saved;
  });
  for (const server of [['origin'], ['cache', '--upstream', 'http://127.0.0.1:9']]) {
    const help = await runCli([server[0]!, '--help']);
    t.match(help.stdout, /logs are JSON lines on stderr, at the\nconfiguration's logLevel: \(default info\), or \$FLEETCACHE_LOG_LEVEL, which overrides it\n/, `${server[0]} --help`);
    const named = /\(([a-z, ]+) or ([a-z]+); deploy\/OPERATIONS\.md, "Logs"\)/.exec(help.stdout);
    // the levels a server refuses a wrong one with, before it starts
    process.env.FLEETCACHE_LOG_LEVEL = 'loud';
    const refused = await runCli([...server, '--listen', '127.0.0.1:0', '--data', join(dir, server[0]!)]);
    delete process.env.FLEETCACHE_LOG_LEVEL;
    t.equal(refused.code, EXIT.config, `${server[0]}: an unknown level is exit 3`);
    const accepted = /must be one of ([a-z, ]+), not "loud"/.exec(refused.stderr)?.[1];
    t.ok(named && accepted, `${server[0]}: both list the levels`);
    t.same(named ? [...named[1]!.split(', '), named[2]] : [], accepted?.split(', '), `${server[0]} --help names the levels it accepts`);
  }
});
