// spread's command line spells long flags with one dash; commander wants two.

/** Long flags spelt with one dash as spread spells them (fleetcache's own -order, -fleet and -data too) that take no value... */
const BOOLEAN_FLAGS = ['vv', 'abend', 'reuse', 'resend', 'discard', 'restore', 'list', 'order', 'debug', 'shell', 'shell-before', 'shell-after', 'gc', 'report'];
/** ...and those that take one. */
const VALUE_FLAGS = ['seed', 'artifacts', 'fleet', 'data', 'repeat', 'pass', 'reuse-pid'];
/** fleetcache run's own options that take a value, spelt with two dashes only. */
const OWN_VALUE_FLAGS = ['token-file', 'base-cache-size', 'workers', 'fail-logs'];
/** A flag whose value is the next argument (-pass PW, --workers N), not one given after `=`. */
const TAKES_NEXT = new RegExp(`^--?(${[...VALUE_FLAGS, ...OWN_VALUE_FLAGS].join('|')})$`);
/** A boolean flag given a value (-reuse=true), with one dash or two. */
const BOOLEAN = new RegExp(`^--?(${BOOLEAN_FLAGS.join('|')})=(.*)$`);
/** A long flag spelt with one dash. */
const SINGLE_DASH = new RegExp(`^-(${[...BOOLEAN_FLAGS, ...VALUE_FLAGS].join('|')})(=.*)?$`);
/** spread's boolean -v, which Go's flag package also takes as --v, and with a value (-v=true). */
const VERBOSE = /^--?v(?:=(.*))?$/;
/** What Go's flag package takes as a boolean flag's value (strconv.ParseBool). */
const TRUE = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);
const FALSE = new Set(['0', 'f', 'F', 'FALSE', 'false', 'False']);

/**
 * spread's single-dash long flags (-seed=1, -vv, -artifacts DIR) as commander's double-dash ones;
 * a boolean one given a value as Go's flag package takes it (-reuse=true, -abend=false, -v=true)
 * is given, or left out; -help asks for the help. The value of a flag that takes one and every
 * argument after `--` are left as they are: Go's flag package takes `-pass -help` as the
 * password "-help", and commander too.
 */
export function normaliseSpreadFlags(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return [...out, ...argv.slice(i)];
    out.push(...normaliseFlag(a));
    if (TAKES_NEXT.test(a) && i + 1 < argv.length) out.push(argv[++i]!);
  }
  return out;
}

/** One argument that is no flag's value, as commander takes it (none when it is a boolean flag set false). */
function normaliseFlag(a: string): string[] {
  const bool = BOOLEAN.exec(a);
  if (bool && TRUE.has(bool[2]!)) return [`--${bool[1]!}`];
  if (bool && FALSE.has(bool[2]!)) return [];
  const verbose = VERBOSE.exec(a);
  if (verbose && (verbose[1] === undefined || TRUE.has(verbose[1]))) return ['-v'];
  if (verbose && FALSE.has(verbose[1]!)) return [];
  // Go's flag package answers -help as -h and --help
  if (a === '-help') return ['--help'];
  return [SINGLE_DASH.test(a) ? `-${a}` : a];
}
